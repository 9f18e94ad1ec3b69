"""The agent cache: LRU bound, never evicting mid-run, idle TTL, and history surviving."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hermes_core import hookimpl
from hermes_core.cache import AgentCache
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for


def evictions(recorder: HookRecorder) -> list[tuple[str, str]]:
    return [(e["session_key"], e["reason"]) for e in recorder.of("on_evict")]


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_lru_bound_evicts_the_least_recently_used(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, cache={"max_agents": 2}))
    await send(gateway, "hi", "s:a")
    await send(gateway, "hi", "s:b")
    agent_b = gateway.cache.get("s:b")
    await send(gateway, "again", "s:a")  # a is now more recently used than b
    assert evictions(hook_recorder) == []

    await send(gateway, "hi", "s:c")
    assert evictions(hook_recorder) == [("s:b", "lru")]
    assert hook_recorder.of("on_evict")[0]["agent"] is agent_b
    assert len(gateway.cache) == 2
    assert "s:a" in gateway.cache and "s:c" in gateway.cache


@pytest.mark.slow
async def test_an_agent_in_use_is_never_evicted_mid_run(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    events: list[tuple[str, str]] = []

    class Timeline:
        @hookimpl
        def on_evict(self, session_key: str, reason: str) -> None:
            events.append(("evicted", session_key))

        @hookimpl
        def post_run(self, session: Any, agent: Any, cache: AgentCache) -> None:
            # Still cached when its run ends: nothing evicted it while it ran.
            still_cached = cache.get(session.key) is agent
            events.append(("finished" if still_cached else "lost mid-run", session.key))

    register_plugin(Timeline())
    gateway = await make_gateway(settings_for(fake_openai.url, cache={"max_agents": 1}))
    await send(gateway, "/model local:slow-0.5-x", "s:slow")
    slow = asyncio.create_task(send(gateway, "take your time", "s:slow"))
    await wait_for(lambda: fake_openai.requests_for("slow-"))

    # While s:slow runs, two more sessions need agents in a cache of one.
    assert not (await send(gateway, "quick", "s:b")).failed
    assert not (await send(gateway, "quick", "s:c")).failed
    assert ("evicted", "s:slow") not in events
    assert "s:slow" in gateway.cache

    reply = await slow
    assert reply.text == "[slow-0.5-x] take your time (user messages: 1)"
    assert [event for event in events if event[0] != "evicted"] == [
        ("finished", "s:b"),
        ("finished", "s:c"),
        ("finished", "s:slow"),
    ]
    assert ("evicted", "s:slow") not in events
    # The busy agent counted as the most recently used: the others made room, and the
    # cache is back within its bound once every run has finished.
    assert ("evicted", "s:b") in events and ("evicted", "s:c") in events
    assert list(gateway.cache) == ["s:slow"]


async def test_idle_agents_are_evicted_by_the_sweeper(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, cache={"idle_ttl_s": 0.2}))
    await send(gateway, "hi")
    agent = gateway.cache.get("test:1")
    assert agent is not None
    await wait_for(lambda: evictions(hook_recorder))
    assert evictions(hook_recorder) == [("test:1", "idle")]
    assert hook_recorder.of("on_evict")[0]["agent"] is agent
    assert "test:1" not in gateway.cache


@pytest.mark.slow
async def test_a_long_run_is_not_idle_when_it_ends(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    settings = settings_for(fake_openai.url, "slow-0.5-x", cache={"idle_ttl_s": 0.3})
    gateway = await make_gateway(settings)
    await send(gateway, "hi")
    # The run outlasted the TTL, but idleness counts from when it ended.
    assert gateway.cache.evict_idle() == 0
    assert "test:1" in gateway.cache
    await wait_for(lambda: evictions(hook_recorder))
    assert evictions(hook_recorder) == [("test:1", "idle")]


async def test_history_survives_eviction(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, cache={"max_agents": 1}))
    await send(gateway, "one", "s:a")
    first_agent = gateway.cache.get("s:a")
    await send(gateway, "other", "s:b")
    assert evictions(hook_recorder) == [("s:a", "lru")]

    reply = await send(gateway, "two", "s:a")
    assert gateway.cache.get("s:a") is not first_agent
    assert reply.text == "[ok-primary] two (user messages: 2)"
    assert [m["content"] for m in fake_openai.snapshot()[-1].messages] == [
        "one",
        "[ok-primary] one (user messages: 1)",
        "two",
    ]
