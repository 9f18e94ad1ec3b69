"""The breaker state machine and the registry's admission, on a clock the test moves."""

from __future__ import annotations

from typing import Any

from hermes_core.health.breaker import Breaker, BreakerPolicy, State, Verdict
from hermes_core.health.registry import ModelHealth
from hermes_core.providers import ProviderError
from hermes_core.settings import ModelRef

POLICY = BreakerPolicy(failures=3, cooldown_s=10, max_cooldown_s=35)
REF = ModelRef("p", "m")


def test_counted_failures_open_after_the_threshold_and_a_success_resets_them() -> None:
    breaker = Breaker(POLICY)
    breaker.record(Verdict.FAILED, 0, "500")
    breaker.record(Verdict.FAILED, 0, "500")
    breaker.record(Verdict.HEALTHY, 0, "answered")
    assert breaker.record(Verdict.FAILED, 0, "500") is None
    breaker.record(Verdict.FAILED, 0, "500")
    opened = breaker.record(Verdict.FAILED, 1, "500")
    assert opened is not None and opened.state is State.OPEN and opened.retry_at == 11


def test_unusable_opens_at_once_and_neutral_changes_nothing() -> None:
    breaker = Breaker(POLICY)
    assert breaker.record(Verdict.NEUTRAL, 0, "400") is None
    assert breaker.failures == 0
    assert breaker.state is State.CLOSED
    assert breaker.record(Verdict.UNUSABLE, 0, "404") is not None
    assert breaker.state is State.OPEN


def test_a_hold_opens_for_exactly_that_long() -> None:
    breaker = Breaker(POLICY)
    opened = breaker.record(Verdict.FAILED, 100, "429", hold_s=2.5)
    assert opened is not None and opened.retry_at == 102.5


def test_one_probe_when_the_cooldown_ends_and_the_cooldown_doubles_up_to_the_cap() -> None:
    breaker = Breaker(POLICY)
    breaker.record(Verdict.UNUSABLE, 0, "404")
    assert breaker.blocks(9.9) and not breaker.due(9.9)
    assert breaker.due(10)
    breaker.claim_probe()
    assert breaker.blocks(10) and breaker.blocks(1000), "others skip while the probe is out"
    reopened = breaker.record(Verdict.UNUSABLE, 11, "404")
    assert reopened is not None and reopened.retry_at == 31  # 20 s: doubled
    breaker.claim_probe()
    breaker.record(Verdict.FAILED, 31, "500")
    assert breaker.retry_at == 31 + 35  # 40 s capped at 35
    breaker.claim_probe()
    closed = breaker.record(Verdict.HEALTHY, 70, "answered")
    assert closed is not None and closed.state is State.CLOSED
    breaker.record(Verdict.UNUSABLE, 80, "404")
    assert breaker.retry_at == 90, "a success restores the first cooldown"


def test_a_probe_that_proves_nothing_lets_the_next_caller_probe() -> None:
    breaker = Breaker(POLICY)
    breaker.record(Verdict.UNUSABLE, 0, "404")
    breaker.claim_probe()
    released = breaker.record(Verdict.NEUTRAL, 12, "abandoned")
    assert released is not None and released.state is State.OPEN
    assert breaker.due(12)


def test_a_late_failure_of_a_request_sent_before_opening_keeps_the_cooldown() -> None:
    breaker = Breaker(POLICY)
    breaker.record(Verdict.UNUSABLE, 0, "404")
    assert breaker.record(Verdict.FAILED, 5, "500") is None
    assert breaker.retry_at == 10


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_admissions_get_one_probe() -> None:
    clock = Clock()
    seen: list[tuple[Any, ...]] = []

    async def notify(*args: Any) -> None:
        seen.append(args)

    health = ModelHealth(notify, clock=clock, wall_clock=clock)
    health.configure({"p": POLICY})
    await health.report(REF, ProviderError("non_retryable", "HTTP 404", status=404))
    assert await health.admit(REF) is not None
    clock.now += 10
    assert await health.admit(REF) is None  # this one is the probe
    assert [await health.admit(REF) is not None for _ in range(5)] == [True] * 5
    await health.report(REF, None)
    assert await health.admit(REF) is None
    assert [(a[0], a[1], a[2]) for a in seen] == [
        ("p", "m", "open"),
        ("p", "m", "half_open"),
        ("p", "m", "closed"),
    ]


async def test_an_active_policy_keeps_runs_from_probing() -> None:
    clock = Clock()
    health = ModelHealth(clock=clock, wall_clock=clock)
    health.configure({"p": BreakerPolicy(cooldown_s=10, active_probe=True)})
    await health.report(REF, ProviderError("non_retryable", "HTTP 404", status=404))
    clock.now += 60
    assert await health.admit(REF) is not None, "the gateway's own probe goes, not a run"


async def test_a_retry_is_admitted_only_if_the_breaker_lets_it_through_within_the_wait() -> None:
    clock = Clock()
    health = ModelHealth(clock=clock, wall_clock=clock)
    health.configure({"p": POLICY})
    await health.report(REF, ProviderError("rate_limit", "HTTP 429", status=429, retry_after=2))
    assert await health.admit(REF, within_s=1) is not None
    assert await health.admit(REF, within_s=2) is None


async def test_an_applied_transition_is_notified_and_admits_by_its_retry_at_but_not_published() -> (
    None
):
    clock = Clock()
    notified: list[tuple[Any, ...]] = []
    published: list[tuple[Any, ...]] = []

    async def notify(*args: Any) -> None:
        notified.append(args)

    async def publish(*args: Any) -> None:
        published.append(args)

    health = ModelHealth(notify, clock=clock, wall_clock=clock)
    health.configure({"p": POLICY})
    health.publish = publish
    await health.apply(("p", "m"), State.OPEN, "HTTP 404 elsewhere", clock.now + 5)
    assert await health.admit(REF) is not None
    clock.now += 5
    assert await health.admit(REF) is None  # its cooldown ended: this caller probes
    await health.apply(("p", "m"), State.CLOSED, "answered", None)
    assert [(a[2], a[3]) for a in notified] == [
        ("open", "HTTP 404 elsewhere"),
        ("half_open", "probing after HTTP 404 elsewhere"),
        ("closed", "answered"),
    ]
    assert [a[2] for a in published] == ["half_open"]  # only the transition decided here
