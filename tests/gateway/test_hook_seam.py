"""The one hook call path: spec kinds, new-style wrappers, pluggy's monitoring, and the
``gateway`` run hooks receive — against a real gateway and the scripted OpenAI server."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy

from hermes_core import hookimpl
from hermes_core.gateway import Gateway
from hermes_core.hookexec import AsyncPluginManager
from hermes_core.hookspecs import KIND_OPTION
from hermes_core.testing import FakeOpenAI, HookRecorder, send
from hermes_core.types import Message, RunResult, Session, SessionState, make_result


def test_every_spec_declares_its_kind_in_its_pluggy_options() -> None:
    pm = AsyncPluginManager()
    kinds = {name: getattr(pm.hook, name).spec.opts[KIND_OPTION] for name in vars(pm.hook)}
    assert kinds["register_tools"] == kinds["startup"] == "registration"
    assert kinds["pre_run"] == kinds["agent_run"] == kinds["pre_tool_call"] == "decision"
    assert kinds["post_run"] == kinds["on_evict"] == kinds["shutdown"] == "observer"
    # Decision hooks are pluggy firstresult hooks, and only they are.
    firstresult = {n for n in kinds if getattr(pm.hook, n).spec.opts["firstresult"]}
    assert firstresult == {n for n, kind in kinds.items() if kind == "decision"}


async def test_hook_agent_run(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    seen: list[tuple[str, str, bool | None]] = []

    class Timer:
        @hookimpl(wrapper=True)
        def agent_run(
            self, session: Session, message: Message, gateway: Gateway
        ) -> Generator[None, RunResult, RunResult]:
            seen.append(("before", message.text, None))
            result = yield  # the awaited result of the whole run
            seen.append(("after", message.text, result["failed"]))
            return result

    class Replacement:
        @hookimpl
        async def agent_run(self, message: Message) -> RunResult | None:
            if message.text != "replace me":
                return None
            return make_result(final_response="answered by a plugin")

    register_plugin(Timer(), "timer")
    register_plugin(Replacement(), "replacement")
    gateway = await make_gateway()

    reply = await send(gateway, "hello")
    assert reply.text == "[ok-primary] hello (user messages: 1)"
    assert seen == [("before", "hello", None), ("after", "hello", False)]

    # An implementation that answers replaces the run loop: no LLM request, post_run still fires.
    reply = await send(gateway, "replace me")
    assert reply.text == "answered by a plugin"
    assert [r.model for r in fake_openai.requests] == ["ok-primary"]
    assert [c["result"]["final_response"] for c in hook_recorder.of("post_run")][-1] == (
        "answered by a plugin"
    )
    assert seen[-1] == ("after", "replace me", False)


async def test_a_wrapper_sees_short_circuited_runs_and_may_replace_the_result(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    class Gate:
        @hookimpl
        def pre_run(self, message: Message) -> dict[str, Any] | None:
            return {"final_response": "gated"} if message.text == "gate" else None

    class Rewriter:
        @hookimpl(wrapper=True)
        def agent_run(self) -> Generator[None, RunResult, RunResult]:
            result = yield
            return {**result, "final_response": f"<{result['final_response']}>"}

    register_plugin(Gate(), "gate")
    register_plugin(Rewriter(), "rewriter")
    gateway = await make_gateway()
    assert (await send(gateway, "gate")).text == "<gated>"
    assert fake_openai.requests == []


async def test_an_exception_in_a_decision_wrapper_fails_the_run_but_not_the_gateway(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    class Broken:
        @hookimpl(wrapper=True)
        def agent_run(self) -> Generator[None, RunResult, RunResult]:
            yield
            raise RuntimeError("wrapper broke")

    register_plugin(Broken(), "broken-wrapper")
    gateway = await make_gateway()
    reply = await send(gateway, "hi")
    assert reply.result is not None
    assert (reply.result["failed"], reply.result["error_kind"]) == (True, "internal")
    assert "broken-wrapper" in str(reply.result["error"])


async def test_an_exception_in_an_observer_wrapper_is_logged_and_isolated(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    calls: list[str] = []

    class Broken:
        @hookimpl(wrapper=True)
        def post_run(self) -> Generator[None, None, None]:
            raise RuntimeError("never yields")
            yield

    class Fine:
        @hookimpl
        def post_run(self, result: RunResult) -> None:
            calls.append(str(result["final_response"]))

    register_plugin(Broken(), "broken-observer")
    register_plugin(Fine(), "fine")
    gateway = await make_gateway()
    reply = await send(gateway, "hi")
    assert not reply.failed
    assert calls == [reply.text]


async def test_monitoring_sees_the_awaited_outcome_of_each_call(
    make_gateway: Any, register_plugin: Any, plugin_host: Any, fake_openai: FakeOpenAI
) -> None:
    outcomes: list[tuple[str, Any]] = []

    class Async:
        @hookimpl
        async def pre_run(self, message: Message) -> dict[str, Any] | None:
            return {"final_response": "async answer"} if message.text == "ask" else None

    def before(name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        pass

    def after(
        outcome: pluggy.Result[Any],
        name: str,
        impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, Any],
    ) -> None:
        if name in ("pre_run", "agent_run"):
            outcomes.append((name, outcome.get_result()))

    register_plugin(Async(), "async")
    undo = plugin_host.pm.add_hookcall_monitoring(before, after)
    try:
        gateway = await make_gateway()
        await send(gateway, "ask")
    finally:
        undo()
    assert [name for name, _ in outcomes] == ["pre_run", "agent_run"]
    assert all(value["final_response"] == "async answer" for _, value in outcomes)


async def test_every_run_hook_receives_the_gateway(
    make_gateway: Any, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway()
    await send(gateway, "hello")
    await send(gateway, "/reset")
    run_hooks = {"agent_run", "pre_run", "on_llm_request", "post_run", "on_evict"}
    calls = [call for call in hook_recorder.calls if call.hook in run_hooks]
    assert {call.hook for call in calls} == run_hooks
    assert all(call.kwargs["gateway"] is gateway for call in calls)


@dataclass
class CountState:
    runs: int = 0


COUNT = SessionState("counter", CountState)


class Counter:
    """A plugin with settings of its own and typed per-session state."""

    @hookimpl
    def pre_run(self, session: Session, gateway: Gateway) -> dict[str, Any] | None:
        limit = int(gateway.plugin_settings("counter").get("limit", 100))
        state = COUNT.get(session)
        if state.runs >= limit:
            return {"final_response": f"limit {limit} reached", "failed": True}
        state.runs += 1
        COUNT.put(session, state)
        return None


async def test_plugins_read_their_settings_and_typed_session_state(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI, hermes_settings: Any
) -> None:
    register_plugin(Counter(), "counter")
    gateway = await make_gateway({**hermes_settings, "counter": {"limit": 2}})
    for text in ("one", "two"):
        assert not (await send(gateway, text)).failed
    assert (await send(gateway, "three")).text == "limit 2 reached"
    session = await gateway.session("test:1", "test")
    assert COUNT.get(session) == CountState(runs=2)
    assert session.data["counter"] == {"runs": 2}  # JSON-ready, stored with the session
    assert (await send(gateway, "/reset")).command == "/reset"
    assert COUNT.get(session) == CountState()  # /reset clears plugin state


async def test_status_reads_the_breaker_through_its_public_api(
    make_gateway: Any, fake_openai: FakeOpenAI, hermes_settings: Any
) -> None:
    gateway = await make_gateway({**hermes_settings, "agent": {"model": "local:auth-primary"}})
    await send(gateway, "fails")
    breaker = gateway.plugin("circuit_breaker")
    session = await gateway.session("test:1", "test")
    assert breaker is not None and breaker.status(session).failures == 1  # type: ignore[attr-defined]
    assert "Consecutive hard failures: 1" in (await send(gateway, "/status")).text


async def test_a_run_hook_no_plugin_implements_costs_no_call_unless_monitored(
    make_gateway: Any, plugin_host: Any, monkeypatch: Any
) -> None:
    """pre_tool_call has no built-in implementation: unmonitored, the facade answers None
    without entering pluggy's call path; monitored (HERMES_TRACE_PLUGINS, HookRecorder), the
    call is made and seen."""
    gateway = await make_gateway()
    pm = plugin_host.pm
    assert pm.hook.pre_tool_call.get_hookimpls() == []
    session = await gateway.session("test:1", "test")
    entered: list[str] = []
    inner = pm._inner_hookexec

    def spy(name: str, impls: Any, kwargs: Any, firstresult: bool) -> Any:
        entered.append(name)
        return inner(name, impls, kwargs, firstresult)

    monkeypatch.setattr(pm, "_inner_hookexec", spy)  # pluggy's call path, not a monitor
    assert await gateway.hooks.pre_tool_call(session, "clock", {}) is None
    assert entered == []
    recorder = HookRecorder()
    undo = recorder.attach(pm)
    try:
        assert await gateway.hooks.pre_tool_call(session, "clock", {}) is None
    finally:
        undo()
    assert recorder.names() == ["pre_tool_call"]
    assert entered == ["pre_tool_call"]
