"""The suspended runs of client tools are bounded by count and by age, and every run that
leaves without being resumed is ended; client tool schemas are offered after the gateway's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from hermes_core.client_tools import ClientToolSet, EndRun, SuspendedRuns, name_clash
from hermes_core.providers import ToolCall
from hermes_core.run_request import Suspension
from hermes_core.tools import Tool


def suspension(key: str, created: float | None = None) -> Suspension:
    call = ToolCall(f"call-{key}", "get_weather", "{}")
    return Suspension(
        key,
        "run",
        {"role": "user", "content": "hi"},
        [],
        [],
        (call,),
        created=time.monotonic() if created is None else created,
    )


MakeRuns = Callable[..., SuspendedRuns]


@pytest.fixture
def ended() -> list[str]:
    """The session keys of the runs the ``make_runs`` fixture's runs ended, in order."""
    return []


@pytest.fixture
async def make_runs(ended: list[str]) -> AsyncIterator[MakeRuns]:
    """``make_runs(max_runs=10, max_age_s=60, end=None)``: started :class:`SuspendedRuns`
    that end runs with ``end``, by default recording each in ``ended``; closed after the test."""
    made: list[SuspendedRuns] = []

    async def record(run: Suspension) -> None:
        ended.append(run.session_key)

    def make(max_runs: int = 10, max_age_s: float = 60, end: EndRun = record) -> SuspendedRuns:
        made.append(SuspendedRuns(max_runs=max_runs, max_age_s=max_age_s, end=end))
        made[-1].start()
        return made[-1]

    yield make
    for runs in made:
        await runs.aclose()


async def test_the_oldest_suspended_run_goes_first_past_max_runs_and_is_ended(
    make_runs: MakeRuns, ended: list[str]
) -> None:
    runs = make_runs(max_runs=2)
    for key in ("a", "b", "c"):
        runs.put(key, suspension(key))
    assert len(runs) == 2
    assert runs.take("a") is None
    assert runs.take("b") is not None and runs.take("c") is not None
    assert len(runs) == 0, "take() removes the run"
    await runs.settled()
    assert ended == ["a"], "a run taken to be resumed is not ended"


async def test_an_expired_suspended_run_is_never_resumed(make_runs: MakeRuns) -> None:
    runs = make_runs(max_age_s=5)
    runs.put("old", suspension("old", created=time.monotonic() - 6))
    runs.put("new", suspension("new"))
    assert runs.peek("old") is None
    assert runs.take("new") is not None


async def test_a_run_left_to_expire_is_ended_on_time_with_nothing_else_happening(
    make_runs: MakeRuns, ended: list[str]
) -> None:
    runs = make_runs(max_age_s=0.2)
    runs.put("late", suspension("late"))
    put_at = time.monotonic()
    async with asyncio.timeout(5):
        while not ended:
            await asyncio.sleep(0.01)
    assert ended == ["late"]
    assert 0.2 <= time.monotonic() - put_at < 1.0


async def test_an_abandoned_run_is_ended_and_a_missing_one_is_nothing(
    make_runs: MakeRuns, ended: list[str]
) -> None:
    runs = make_runs()
    runs.put("a", suspension("a"))
    runs.abandon("a")
    runs.abandon("never-suspended")
    await runs.settled()
    assert ended == ["a"] and len(runs) == 0


async def test_closing_ends_every_run_still_waiting(make_runs: MakeRuns, ended: list[str]) -> None:
    runs = make_runs()
    runs.put("a", suspension("a"))
    runs.put("b", suspension("b"))
    await runs.aclose()
    assert ended == ["a", "b"]


async def test_a_run_the_store_cannot_end_is_logged_and_the_next_is_still_ended(
    make_runs: MakeRuns, ended: list[str], errors_logged: list[str]
) -> None:
    async def end(run: Suspension) -> None:
        if run.session_key == "broken":
            raise OSError("disk full")
        ended.append(run.session_key)

    runs = make_runs(end=end)
    for key in ("broken", "fine"):
        runs.put(key, suspension(key))
        runs.abandon(key)
    await runs.settled()
    assert ended == ["fine"]
    assert any("broken" in line and "disk full" in line for line in errors_logged)


def test_client_schemas_follow_the_gateways_and_only_gateway_tools_resolve() -> None:
    stamp = Tool("stamp", "", {"type": "object"}, lambda arguments: "x")
    weather = {"type": "function", "function": {"name": "get_weather"}}
    toolset = ClientToolSet({"stamp": stamp}, (weather,))
    assert [s["function"]["name"] for s in toolset.schemas()] == ["stamp", "get_weather"]
    assert toolset.get("get_weather") is None
    assert name_clash(["get_weather", "stamp"], toolset) == "stamp"
    assert name_clash(["get_weather"], toolset) is None
