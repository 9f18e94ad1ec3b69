"""What one request's outcome says about its provider and about its model.

A failure is the provider's when every model behind it would fail the same way (a rejected
key, an endpoint nobody answers on), the model's when another model of the same provider may
still work (errors, timeouts, rate limits, a missing model). Anything the upstream answered
that is not the provider's failure proves the provider reachable.
"""

from __future__ import annotations

from dataclasses import dataclass

from hermes_core.health.breaker import Verdict
from hermes_core.providers import ProviderError

#: The HTTP status that says the model does not exist (a 400 ``model_not_found`` does not:
#: it is judged like any other 400, a request that is wrong rather than a model that is gone).
MODEL_NOT_FOUND_STATUS = 404
#: An ``auth`` failure with this status refuses one model to a key the provider accepted.
FORBIDDEN_STATUS = 403


@dataclass(frozen=True)
class Judgement:
    """The verdict on each target of one request, and how long the upstream asked us to wait."""

    provider: Verdict
    model: Verdict
    hold_s: float | None = None


HEALTHY = Judgement(Verdict.HEALTHY, Verdict.HEALTHY)
NEUTRAL = Judgement(Verdict.NEUTRAL, Verdict.NEUTRAL)


def judge(error: ProviderError | None) -> Judgement:
    """The verdicts of one request that answered (``None``) or failed with ``error``."""
    if error is None:
        return HEALTHY
    kind = error.kind
    if kind == "auth" and error.status == FORBIDDEN_STATUS:  # this key may not use this model
        return Judgement(Verdict.HEALTHY, Verdict.UNUSABLE)
    if kind == "auth":  # the key is rejected, for every model of the provider
        return Judgement(Verdict.UNUSABLE, Verdict.NEUTRAL)
    if kind == "connection":
        return Judgement(Verdict.FAILED, Verdict.NEUTRAL)
    if kind == "timeout":  # the endpoint may be fine and the model slow: the model's failure
        return Judgement(Verdict.NEUTRAL, Verdict.FAILED)
    if kind == "rate_limit":
        return Judgement(Verdict.HEALTHY, Verdict.FAILED, error.retry_after)
    if kind == "server":
        return Judgement(Verdict.HEALTHY, Verdict.FAILED)
    if kind == "non_retryable":
        missing = error.status == MODEL_NOT_FOUND_STATUS
        return Judgement(Verdict.HEALTHY, Verdict.UNUSABLE if missing else Verdict.NEUTRAL)
    return NEUTRAL
