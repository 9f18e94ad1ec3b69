"""One breaker: the pure state machine behind model health, with the clock passed in.

*closed* lets every request through and counts consecutive failures; at ``failures`` (or at
once, for a failure that says the target is unusable) it goes *open* for ``cooldown_s``. When
that has passed, the first caller claims the one probe (*half_open*) and everyone else keeps
skipping until the probe answers: a success closes the breaker and restores the cooldown, a
failure opens it again for twice as long, up to ``max_cooldown_s``. An outcome that proves
nothing (a plain 400, a cancelled request) releases the probe, so the next caller probes.

Nothing here sleeps, logs or reads a clock: every method takes ``now`` (seconds, monotonic),
so the tests drive it without waiting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(enum.Enum):
    """What one request's outcome says about a breaker's target."""

    #: It answered: the target works.
    HEALTHY = "healthy"
    #: A failure that says the target is unhealthy; counted toward ``failures``.
    FAILED = "failed"
    #: A failure that says the target is unusable (a revoked key, a missing model): open now.
    UNUSABLE = "unusable"
    #: Says nothing about the target (a bad request, a cancelled one).
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class BreakerPolicy:
    """The ``providers.<name>.breaker`` settings of one breaker."""

    enabled: bool = True
    failures: int = 3
    cooldown_s: float = 30.0
    max_cooldown_s: float = 900.0
    active_probe: bool = False


@dataclass(frozen=True)
class Transition:
    """A change of state, and why; ``retry_at`` is when an open breaker is next tried."""

    state: State
    reason: str
    retry_at: float | None


class Breaker:
    """The health of one target (a provider, or one of its models)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = State.CLOSED
        self.failures = 0
        self.cooldown_s = policy.cooldown_s
        self.retry_at: float | None = None
        self.last_reason = ""

    def blocks(self, now: float) -> bool:
        """Whether a request now must skip this target (a probe may claim it if not)."""
        if self.state is State.HALF_OPEN:
            return True
        return self.state is State.OPEN and self.retry_at is not None and now < self.retry_at

    def due(self, now: float) -> bool:
        """Whether the target is open and its cooldown has passed: the next caller probes."""
        return self.state is State.OPEN and not self.blocks(now)

    def claim_probe(self) -> Transition:
        """Let the caller send the one probe; everyone else skips until it answers."""
        self.state = State.HALF_OPEN
        return self._transition(f"probing after {self.last_reason}")

    def record(
        self, verdict: Verdict, now: float, reason: str, hold_s: float | None = None
    ) -> Transition | None:
        """Apply one outcome; the transition it caused, if any.

        ``hold_s`` is how long the upstream asked us to stay away (``Retry-After``): given on
        a failure, the breaker opens at once and for exactly that long.
        """
        if verdict is Verdict.HEALTHY:
            return self._close(reason)
        if verdict is Verdict.NEUTRAL:
            if self.state is State.HALF_OPEN:  # the probe proved nothing: the next one goes
                self.state, self.retry_at = State.OPEN, now
                return self._transition(self.last_reason)
            return None
        if self.state is State.HALF_OPEN:
            self.cooldown_s = min(self.cooldown_s * 2, self.policy.max_cooldown_s)
            return self._open(now, f"probe failed: {reason}", hold_s)
        if self.state is State.OPEN:
            return None  # a request sent before it opened: the cooldown stands
        self.failures += 1
        if verdict is Verdict.UNUSABLE or hold_s is not None:
            return self._open(now, reason, hold_s)
        if self.failures >= self.policy.failures:
            return self._open(now, f"{self.failures} consecutive failures, last: {reason}", None)
        return None

    def force(self, state: State, reason: str, retry_at: float | None) -> Transition | None:
        """Take the state another gateway decided (``retry_at`` on this breaker's clock); the
        transition, or None when nothing changed."""
        if state is State.CLOSED:
            return self._close(reason)
        if self.state is state and self.retry_at == retry_at:
            return None
        self.state, self.retry_at, self.last_reason = state, retry_at, reason
        return self._transition(reason)

    def _open(self, now: float, reason: str, hold_s: float | None) -> Transition:
        self.state = State.OPEN
        self.retry_at = now + (self.cooldown_s if hold_s is None else hold_s)
        self.last_reason = reason
        return self._transition(reason)

    def _close(self, reason: str) -> Transition | None:
        was = self.state
        self.state, self.failures, self.retry_at = State.CLOSED, 0, None
        self.cooldown_s = self.policy.cooldown_s
        return None if was is State.CLOSED else self._transition(reason)

    def _transition(self, reason: str) -> Transition:
        return Transition(self.state, reason, self.retry_at)
