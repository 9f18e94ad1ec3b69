"""``hermes-core health``: the configured models and the breaker settings that govern them.

Health lives inside each gateway process and there is no channel into a running one, so this
prints what the settings say (each model of the chain, the ``providers.<name>.breaker`` policy
of its provider) and where a running gateway shows its live state (``/status``, the
``hermes_model_health`` gauge). A bad setting exits 2 with one line, as every command does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hermes_core.gateway import Gateway
from hermes_core.health import BreakerPolicy
from hermes_core.settings import Config

#: Where a running gateway's live state is, for the JSON's reader.
LIVE_STATE = (
    "kept by each running gateway: send /status in a chat, or read the hermes_model_health "
    "gauge at GET /metrics"
)


def policy_json(policy: BreakerPolicy) -> dict[str, Any]:
    """A policy as its settings spell it (``probe`` rather than ``active_probe``)."""
    values = dataclasses.asdict(policy)
    values["probe"] = "active" if values.pop("active_probe") else "passive"
    return values


async def health_report(config: Config) -> dict[str, Any]:
    """The JSON ``hermes-core health`` prints, from validated settings (nothing started)."""
    gateway = Gateway(config)
    await gateway.configure()  # fills each provider's breaker defaults, checks the values
    chain = [("agent.model", config.model)] + [
        (f"agent.fallbacks[{index}]", ref) for index, ref in enumerate(config.fallbacks)
    ]
    models = [
        {
            "model": str(ref),
            "setting": key,
            "breaker": policy_json(gateway.health.policies.get(ref.provider, BreakerPolicy())),
        }
        for key, ref in chain
    ]
    return {"models": models, "live_state": LIVE_STATE}
