"""The failure hermes-core exists to prevent, and the eviction policy that fixes it."""

from __future__ import annotations

from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for


async def test_primary_and_fallback_failing_keeps_the_cached_agent(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary", ["bad-fallback"]))

    reply = await send(gateway, "hello")
    agent = gateway.cache.get("test:1")

    result = reply.result
    assert result is not None
    assert result["failed"] is True
    assert result["error_kind"] == "non_retryable"
    assert result["fallback_used"] is True
    assert result["model"] == "local:bad-fallback"
    assert "does not exist" in reply.text
    assert agent is not None

    await send(gateway, "again")
    assert gateway.cache.get("test:1") is agent
    assert hook_recorder.of("on_evict") == []
    assert [r.model for r in fake_openai.requests] == ["bad-primary", "bad-fallback"] * 2


async def test_failed_run_adds_nothing_to_history(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    await send(gateway, "first")
    agent = gateway.cache.get("test:1")
    assert agent is not None
    assert agent.history == []


async def test_successful_fallback_evicts_once_and_next_message_retries_primary(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary", ["ok-fallback"]))

    reply = await send(gateway, "hello")
    assert reply.result is not None
    assert reply.result["failed"] is False
    assert reply.result["fallback_used"] is True
    assert reply.text == "[ok-fallback] hello (user messages: 1)"
    evictions = hook_recorder.of("on_evict")
    assert [(e["session_key"], e["reason"]) for e in evictions] == [
        ("test:1", "fallback_succeeded")
    ]
    assert "test:1" not in gateway.cache

    fake_openai.clear()
    second = await send(gateway, "second")
    assert fake_openai.requests[0].model == "bad-primary"
    # The history survived the eviction: the fallback sees both user messages.
    assert second.text == "[ok-fallback] second (user messages: 2)"


async def test_on_fallback_fires_at_each_switch(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    settings = settings_for(fake_openai.url, "bad-a", ["auth-b", "ok-c"])
    # The scripted 401 is auth-b's alone, where a real key fails for every model: with health
    # on, the provider (ok-c's too) would be skipped after it. This test is about the switches.
    settings["providers"]["local"]["breaker"] = {"enabled": False}
    gateway = await make_gateway(settings)
    reply = await send(gateway, "hi")
    assert reply.text.startswith("[ok-c]")
    switches = [(c["from_model"], c["to_model"]) for c in hook_recorder.of("on_fallback")]
    assert switches == [("local:bad-a", "local:auth-b"), ("local:auth-b", "local:ok-c")]
    assert "does not exist" in hook_recorder.of("on_fallback")[0]["error"]


async def test_a_message_refused_by_the_breaker_is_still_in_the_transcript(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary", ["bad-fallback"]))
    for text in ("one", "two", "three"):
        await send(gateway, text)
    refused = await send(gateway, "four")
    assert refused.result is not None and refused.result["error_kind"] == "circuit_open"

    transcript = await gateway.store.transcript("test:1")
    users = [(line.message["content"], line.status) for line in transcript]
    assert users == [("one", "failed"), ("two", "failed"), ("three", "failed"), ("four", "failed")]
