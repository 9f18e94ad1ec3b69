"""The gateway's run loop: ordering, concurrency, hooks around runs, and never raising."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hermes_core import hookimpl
from hermes_core.gateway import Gateway
from hermes_core.providers import Completion, RegisterProvider
from hermes_core.settings import ProviderConfig, config_from_dict
from hermes_core.store import MemoryStore
from hermes_core.testing import FakeOpenAI, HookRecorder, message, send, settings_for
from hermes_core.types import Message, RunResult, Session

APOLOGY = "Sorry, something went wrong on our side"


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_runs_of_one_session_are_serialized_in_arrival_order(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "slow-0.05-x"))
    replies = await asyncio.gather(*(send(gateway, f"m{i}") for i in range(10)))

    requests = fake_openai.snapshot()
    assert [r.messages[-1]["content"] for r in requests] == [f"m{i}" for i in range(10)]
    # Each run saw every earlier answer: history grew by one user message per run.
    assert [r.text for r in replies] == [
        f"[slow-0.05-x] m{i} (user messages: {i + 1})" for i in range(10)
    ]


@pytest.mark.slow
async def test_different_sessions_run_concurrently(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "slow-0.5-x"))
    started = time.perf_counter()
    replies = await asyncio.gather(*(send(gateway, "hi", f"test:{i}") for i in range(10)))
    elapsed = time.perf_counter() - started
    assert all(not r.failed for r in replies)
    # One after the other would take 5 s; the margin absorbs a loaded machine.
    assert elapsed < 3.0, f"10 sessions x 0.5 s took {elapsed:.2f} s: not concurrent"


async def test_pre_run_dict_short_circuits(
    make_gateway, fake_openai: FakeOpenAI, register_plugin, hook_recorder: HookRecorder
) -> None:
    class Gate:
        @hookimpl
        def pre_run(self, session: Session, message: Message) -> dict[str, Any] | None:
            if message.text == "blocked":
                return {"final_response": "not today"}
            return None

    register_plugin(Gate())
    gateway = await make_gateway()
    reply = await send(gateway, "blocked")
    assert reply.text == "not today"
    assert fake_openai.snapshot() == []
    assert "test:1" not in gateway.cache, "a short-circuited run creates no agent"

    (post_run,) = hook_recorder.of("post_run")
    assert post_run["agent"] is None
    result = post_run["result"]
    assert result["final_response"] == "not today"
    assert result["failed"] is False and result["error"] is None
    assert result["api_calls"] == 0 and result["fallback_used"] is False
    assert set(result) == set(RunResult.__annotations__)

    # Returning None lets the run proceed.
    assert (await send(gateway, "hello")).text.startswith("[ok-primary] hello")


class CrashingProvider:
    """A provider whose every completion hits a bug."""

    def __init__(self, name: str, config: ProviderConfig) -> None:
        pass

    async def complete(self, model: str, messages: Any, tools: Any, **params: Any) -> Completion:
        raise RuntimeError("provider bug")

    async def aclose(self) -> None:
        pass


async def test_a_crash_inside_the_run_becomes_an_internal_failure(
    make_gateway, fake_openai: FakeOpenAI, register_plugin, hook_recorder: HookRecorder
) -> None:
    class Plugin:
        @hookimpl
        def register_providers(self, register: RegisterProvider) -> None:
            register("crashing", CrashingProvider)

    register_plugin(Plugin())
    settings = settings_for(fake_openai.url)
    settings["agent"]["model"] = "boom:x"
    settings["providers"]["boom"] = {"type": "crashing"}
    gateway = await make_gateway(settings)

    reply = await send(gateway, "hello")
    assert reply.result is not None
    assert reply.result["error_kind"] == "internal"
    assert reply.result["model"] == reply.result["primary_model"] == "boom:x"
    assert reply.text.startswith(APOLOGY)
    (post_run,) = hook_recorder.of("post_run")
    assert post_run["result"]["error_kind"] == "internal"
    assert post_run["agent"] is gateway.cache.get("test:1")
    # The failed run left nothing behind in the history.
    assert gateway.cache.get("test:1").history == []


async def test_failed_runs_leave_no_trace_in_the_next_request(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-x"))
    failed = await send(gateway, "first")
    assert failed.failed
    assert (await send(gateway, "/model local:ok-x")).command == "/model"
    fake_openai.clear()

    reply = await send(gateway, "second")
    assert reply.text == "[ok-x] second (user messages: 1)"
    (request,) = fake_openai.snapshot()
    assert request.messages == [{"role": "user", "content": "second"}]
    assert all(failed.text not in str(m.get("content")) for m in request.messages)


async def test_async_hook_implementations_are_awaited(make_gateway, register_plugin) -> None:
    seen: list[str | None] = []

    class AsyncObserver:
        @hookimpl
        async def post_run(self, result: RunResult) -> None:
            await asyncio.sleep(0)
            seen.append(result["final_response"])

        @hookimpl
        async def pre_run(self, message: Message) -> dict[str, Any] | None:
            await asyncio.sleep(0)
            return {"final_response": "async says no"} if message.text == "stop" else None

    register_plugin(AsyncObserver())
    gateway = await make_gateway()
    await send(gateway, "hello")
    stopped = await send(gateway, "stop")
    assert seen == ["[ok-primary] hello (user messages: 1)", "async says no"]
    assert stopped.text == "async says no"


async def test_a_raising_observer_does_not_stop_the_others(
    make_gateway,
    fake_openai: FakeOpenAI,
    register_plugin,
    hook_recorder: HookRecorder,
    errors_logged: list[str],
) -> None:
    class Raising:
        @hookimpl(tryfirst=True)
        def post_run(self) -> None:
            raise RuntimeError("post_run bug")

        @hookimpl(tryfirst=True)
        def on_evict(self) -> None:
            raise RuntimeError("on_evict bug")

    register_plugin(Raising(), "raising-observer")
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-x", ["ok-y"]))
    reply = await send(gateway, "hello")

    # The user got the answer; the built-in eviction (a post_run after the raising one)
    # still evicted, and the recorder still saw on_evict after the raising implementation.
    assert reply.text == "[ok-y] hello (user messages: 1)"
    assert "test:1" not in gateway.cache
    assert [e["reason"] for e in hook_recorder.of("on_evict")] == ["fallback_succeeded"]
    assert len(hook_recorder.of("post_run")) == 1
    assert any("raising-observer" in line and "post_run bug" in line for line in errors_logged)
    assert any("raising-observer" in line and "on_evict bug" in line for line in errors_logged)


async def test_unknown_command_gets_a_helpful_reply(make_gateway, fake_openai) -> None:
    gateway = await make_gateway()
    reply = await send(gateway, "/frobnicate now")
    assert reply.result is None
    assert "/frobnicate" in reply.text and "/help" in reply.text
    assert fake_openai.snapshot() == []


@pytest.mark.slow
async def test_stop_waits_for_the_run_in_flight(plugin_host, fake_openai: FakeOpenAI) -> None:
    gateway = Gateway(config_from_dict(settings_for(fake_openai.url, "slow-0.5-x")), plugin_host)
    await gateway.start()
    task = asyncio.create_task(gateway.handle(message("hello")))
    await wait_for(lambda: len(fake_openai.snapshot()) == 1)
    assert gateway.status()["runs_in_flight"] == 1

    await gateway.stop()
    assert task.done(), "stop() returned while a run was still in flight"
    reply = task.result()
    assert reply.text == "[slow-0.5-x] hello (user messages: 1)"
    assert gateway.status()["runs_in_flight"] == 0


class _UnreadableStore(MemoryStore):
    """A store whose session reads fail, as a broken disk or a corrupt row would."""

    async def load_session(self, key: str) -> Session | None:
        raise OSError("disk I/O error")


async def test_a_store_that_fails_to_load_the_session_gets_an_apology_not_an_exception(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(store=_UnreadableStore())
    reply = await send(gateway, "hello")
    assert reply.result is not None
    assert (reply.result["failed"], reply.result["error_kind"]) == (True, "internal")
    assert "OSError: disk I/O error" in (reply.result["error"] or "")
    assert fake_openai.requests == []
