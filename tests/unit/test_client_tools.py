"""The suspended runs of client tools are bounded by count and by age; client tool schemas
are offered after the gateway's."""

from __future__ import annotations

import time

from hermes_core.client_tools import ClientToolSet, SuspendedRuns, name_clash
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


def test_the_oldest_suspended_run_goes_first_past_max_runs() -> None:
    runs = SuspendedRuns(max_runs=2, max_age_s=60)
    for key in ("a", "b", "c"):
        runs.put(key, suspension(key))
    assert len(runs) == 2
    assert runs.take("a") is None
    assert runs.take("b") is not None and runs.take("c") is not None
    assert len(runs) == 0, "take() removes the run"


def test_an_expired_suspended_run_is_never_resumed() -> None:
    runs = SuspendedRuns(max_runs=10, max_age_s=5)
    runs.put("old", suspension("old", created=time.monotonic() - 6))
    runs.put("new", suspension("new"))
    assert runs.peek("old") is None
    assert runs.take("new") is not None


def test_client_schemas_follow_the_gateways_and_only_gateway_tools_resolve() -> None:
    stamp = Tool("stamp", "", {"type": "object"}, lambda arguments: "x")
    weather = {"type": "function", "function": {"name": "get_weather"}}
    toolset = ClientToolSet({"stamp": stamp}, (weather,))
    assert [s["function"]["name"] for s in toolset.schemas()] == ["stamp", "get_weather"]
    assert toolset.get("get_weather") is None
    assert name_clash(["get_weather", "stamp"], toolset) == "stamp"
    assert name_clash(["get_weather"], toolset) is None
