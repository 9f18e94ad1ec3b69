"""The gateway-wide health of every provider and model: one :class:`ModelHealth` per gateway.

Every run asks it before entering a model (:meth:`ModelHealth.admit`) and tells it how each
request ended (:meth:`ModelHealth.report`), so a model that is down costs the whole gateway one
request per cooldown instead of one per message. Each ``provider:model`` has a breaker, and so
has each provider, for the failures every one of its models shares (a rejected key, an endpoint
that refuses connections). Transitions are logged and handed to the ``notify`` callback (the
gateway fires ``on_health_change`` there), on the task whose request caused them.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loguru import logger

from hermes_core.health.breaker import Breaker, BreakerPolicy, State, Transition, Verdict
from hermes_core.health.outcomes import judge
from hermes_core.providers import ProviderError
from hermes_core.settings import ModelRef

#: ``notify(provider, model, state, reason, retry_at)``: ``model`` is None for a provider's
#: own breaker, ``retry_at`` a wall-clock time (``time.time()``) or None.
Notify = Callable[[str, str | None, str, str, float | None], Awaitable[None]]
#: A breaker's key: ``(provider, model)``, ``model`` None for the provider's own.
Key = tuple[str, str | None]
#: The policy of a provider whose settings name none.
DEFAULT_POLICY = BreakerPolicy()


def policy_from(table: Mapping[str, Any]) -> BreakerPolicy:
    """The policy of one ``providers.<name>.breaker`` table (validated by the schema)."""
    defaults = BreakerPolicy()
    return BreakerPolicy(
        enabled=bool(table.get("enabled", defaults.enabled)),
        failures=int(table.get("failures", defaults.failures)),
        cooldown_s=float(table.get("cooldown_s", defaults.cooldown_s)),
        max_cooldown_s=float(table.get("max_cooldown_s", defaults.max_cooldown_s)),
        active_probe=str(table.get("probe", "passive")).lower() == "active",
    )


def clock_time(retry_at: float | None) -> str:
    """A wall-clock time as users read it, ``12:51:03 UTC``."""
    if retry_at is None:
        return "now"
    moment = datetime.datetime.fromtimestamp(retry_at, datetime.UTC)
    return moment.strftime("%H:%M:%S UTC")


def target_name(key: Key) -> str:
    provider, model = key
    return f"provider {provider}" if model is None else f"{provider}:{model}"


@dataclass(frozen=True)
class Skip:
    """Why a run may not enter a model now, and when it may."""

    key: Key
    reason: str
    retry_at: float | None

    def __str__(self) -> str:
        return (
            f"skipped {target_name(self.key)}: unhealthy until {clock_time(self.retry_at)} "
            f"({self.reason})"
        )


async def nobody(*args: Any) -> None:
    """The ``notify`` of a registry nobody listens to."""


class ModelHealth:
    """The breakers of one gateway, created on first use from each provider's policy."""

    def __init__(
        self,
        notify: Notify = nobody,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._notify = notify
        self._clock = clock
        self._wall_clock = wall_clock
        self.policies: dict[str, BreakerPolicy] = {}
        self._breakers: dict[Key, Breaker] = {}
        #: The model each provider was last asked for: what its own breaker's probe asks.
        self._last_model: dict[str, str] = {}
        #: Called with a breaker's key each time one opens (the active prober schedules there).
        self.on_open: Callable[[Key], None] = lambda key: None
        #: Called with each transition decided here, not with those :meth:`apply` takes from
        #: other gateways (:mod:`.shared` announces them there).
        self.publish: Notify = nobody

    def configure(self, policies: Mapping[str, BreakerPolicy]) -> None:
        self.policies = dict(policies)

    def breaker(self, key: Key) -> Breaker | None:
        """The breaker of ``key``, or None when its provider switched health off."""
        policy = self.policies.get(key[0], DEFAULT_POLICY)
        if not policy.enabled:
            return None
        found = self._breakers.get(key)
        if found is None:
            found = self._breakers[key] = Breaker(policy)
        return found

    def _targets(self, ref: ModelRef) -> list[tuple[Key, Breaker]]:
        keys: list[Key] = [(ref.provider, None), (ref.provider, ref.model)]
        return [(key, found) for key in keys if (found := self.breaker(key)) is not None]

    def wall(self, moment: float | None) -> float | None:
        """A time of :attr:`_clock` as a wall-clock time."""
        return None if moment is None else self._wall_clock() + (moment - self._clock())

    # --- runs ------------------------------------------------------------------------------

    async def admit(self, ref: ModelRef, *, within_s: float = 0.0) -> Skip | None:
        """None when a run may send ``ref`` a request now (or within ``within_s``, the wait
        before a retry); else why it must skip it. A breaker whose cooldown has passed lets
        this caller be its probe, unless the gateway probes it itself (``probe = "active"``)."""
        now = self._clock()
        probes: list[tuple[Key, Breaker]] = []
        for key, found in self._targets(ref):
            if found.state is State.CLOSED:
                continue
            if found.policy.active_probe or found.blocks(now + within_s):
                return Skip(key, found.last_reason, self.wall(found.retry_at))
            probes.append((key, found))
        for key, found in probes:
            await self._changed(key, found.claim_probe())
        return None

    async def report(self, ref: ModelRef, error: ProviderError | None) -> None:
        """How one request to ``ref`` ended: answered (``error`` None) or failed."""
        now = self._clock()
        self._last_model[ref.provider] = ref.model
        if error is None:  # the usual case: a closed breaker with no failures stays as it is
            for key, found in self._targets(ref):
                if found.state is not State.CLOSED or found.failures:
                    await self._changed(key, found.record(Verdict.HEALTHY, now, "answered"))
            return
        judgement, reason = judge(error), str(error)
        for key, found in self._targets(ref):
            verdict = judgement.model if key[1] else judgement.provider
            hold_s = judgement.hold_s if verdict is Verdict.FAILED else None
            await self._changed(key, found.record(verdict, now, reason, hold_s))

    async def abandon(self, ref: ModelRef) -> None:
        """A request to ``ref`` ended without an answer (cancelled): a probe it was goes back."""
        now = self._clock()
        for key, found in self._targets(ref):
            await self._changed(key, found.record(Verdict.NEUTRAL, now, "abandoned"))

    # --- the gateway's own probes --------------------------------------------------------

    def seconds_until(self, moment: float | None) -> float:
        """Seconds from now until ``moment`` (of :attr:`_clock`); 0 when past or None."""
        return 0.0 if moment is None else max(0.0, moment - self._clock())

    def probe_target(self, key: Key) -> ModelRef | None:
        """The model a probe of ``key`` asks: its own, or the one its provider was last
        asked for."""
        provider, model = key
        model = model or self._last_model.get(provider)
        return None if model is None else ModelRef(provider, model)

    async def claim(self, key: Key) -> bool:
        """Claim the probe of ``key`` for the gateway, if its cooldown has passed."""
        found = self.breaker(key)
        if found is None or not found.due(self._clock()):
            return False
        await self._changed(key, found.claim_probe())
        return True

    def unavailable(self, chain: Iterable[ModelRef]) -> ProviderError:
        """The failure of a run that skipped every model of ``chain``: when it is worth
        trying again, and why each model was skipped."""
        skips = [
            Skip(key, found.last_reason, self.wall(found.retry_at))
            for ref in chain
            for key, found in self._targets(ref)
            if found.state is not State.CLOSED
        ]
        soonest = min((s.retry_at for s in skips if s.retry_at is not None), default=None)
        wait = max(0.0, (soonest or self._wall_clock()) - self._wall_clock())
        detail = "; ".join(f"{target_name(s.key)}: {s.reason}" for s in skips)
        return ProviderError(
            "unavailable",
            f"every model is unhealthy; next attempt in {wait:.0f}s, at {clock_time(soonest)} "
            f"({detail})",
        )

    async def apply(self, key: Key, state: State, reason: str, retry_at: float | None) -> None:
        """Take a transition another gateway decided (``retry_at`` on the wall clock): logged
        and notified as a local one, but not published again."""
        found = self.breaker(key)
        if found is None:
            return
        moment = None if retry_at is None else self._clock() + (retry_at - self._wall_clock())
        await self._changed(key, found.force(state, reason, moment), publish=False)

    # --- reading ---------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Each breaker that has seen a request: ``provider``, ``model`` (None for the
        provider's own), ``state``, ``failures``, ``reason``, ``retry_at`` (wall clock)."""
        return [
            {
                "provider": key[0],
                "model": key[1],
                "state": found.state.value,
                "failures": found.failures,
                "reason": found.last_reason or None,
                "retry_at": self.wall(found.retry_at),
            }
            for key, found in sorted(self._breakers.items(), key=lambda item: str(item[0]))
        ]

    def models(self, configured: Iterable[ModelRef] = ()) -> list[ModelRef]:
        """``configured`` (the chain), then every other model a request was reported for."""
        seen = (ModelRef(p, m) for p, m in self._breakers if m is not None)
        return list(dict.fromkeys([*configured, *seen]))

    def describe(self, ref: ModelRef) -> dict[str, Any]:
        """How ``ref`` stands, as ``/status``, the metrics and ``doctor`` show it: the worse of
        its own breaker and its provider's (``state`` closed when health is off for it)."""
        policy = self.policies.get(ref.provider, BreakerPolicy())
        row: dict[str, Any] = {
            "model": str(ref),
            "enabled": policy.enabled,
            "state": State.CLOSED.value,
            "reason": None,
            "retry_at": None,
        }
        for key in ((ref.provider, None), (ref.provider, ref.model)):
            found = self._breakers.get(key) if policy.enabled else None
            if found is None or found.state is State.CLOSED or row["state"] == State.OPEN:
                continue
            row.update(
                state=found.state.value,
                reason=f"{target_name(key)}: {found.last_reason}",
                retry_at=self.wall(found.retry_at),
            )
        return row

    async def _changed(
        self, key: Key, transition: Transition | None, *, publish: bool = True
    ) -> None:
        if transition is None:
            return
        provider, model = key
        retry_at = self.wall(transition.retry_at)
        name = target_name(key)
        if transition.state is State.OPEN:
            logger.warning(
                "health: {} open until {}: {}", name, clock_time(retry_at), transition.reason
            )
            self.on_open(key)
        elif transition.state is State.HALF_OPEN:
            logger.info("health: {} half-open, probing", name)
        else:
            logger.info("health: {} closed ({})", name, transition.reason)
        await self._notify(provider, model, transition.state.value, transition.reason, retry_at)
        if publish:
            await self.publish(provider, model, transition.state.value, transition.reason, retry_at)
