"""The built-in ``circuit_breaker`` plugin, end to end against the scripted OpenAI server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hermes_core.gateway import Gateway
from hermes_core.plugins import circuit_breaker
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for
from hermes_core.types import Reply


def result_of(reply: Reply) -> dict[str, Any]:
    assert reply.result is not None, f"expected a run, got the command reply {reply.text!r}"
    return dict(reply.result)


async def fail(gateway: Gateway, times: int, session_key: str = "test:1") -> None:
    """Send ``times`` messages that each fail with a hard (non-retryable) error."""
    for index in range(times):
        result = result_of(await send(gateway, f"attempt {index}", session_key))
        assert result["failed"] is True
        assert result["error_kind"] in ("non_retryable", "auth")


def session_breaker_alone(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the gateway-wide model health of ``local`` off: the test is about the
    session breaker's own counting, which an open provider would hide behind ``unavailable``."""
    settings["providers"]["local"]["breaker"] = {"enabled": False}
    return settings


def is_open(reply: Reply) -> bool:
    return reply.result is not None and reply.result["error_kind"] == "circuit_open"


async def test_third_hard_failure_opens_the_breaker_and_stops_llm_requests(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary", ["bad-fallback"]))
    await fail(gateway, 3)
    # Both models were tried on every failing run.
    assert len(fake_openai.snapshot()) == 6

    before = len(fake_openai.snapshot())
    reply = await send(gateway, "are you there?")
    assert len(fake_openai.snapshot()) == before, "an open breaker must not call the LLM"

    result = result_of(reply)
    assert result["failed"] is True
    assert result["error_kind"] == "circuit_open"
    assert result["api_calls"] == 0
    assert "3" in reply.text
    assert "/reset" in reply.text
    assert [(e["session_key"], e["reason"]) for e in hook_recorder.of("on_evict")] == [
        ("test:1", "circuit_open")
    ]
    assert "test:1" not in gateway.cache

    # Further messages get the same notice, still without a request.
    again = await send(gateway, "hello?")
    assert is_open(again)
    assert len(fake_openai.snapshot()) == before


@pytest.mark.parametrize("command", ["/reset", "/new"])
async def test_reset_and_new_close_the_breaker(
    make_gateway, fake_openai: FakeOpenAI, command: str
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    await fail(gateway, 3)
    assert is_open(await send(gateway, "blocked"))

    reply = await send(gateway, command)
    assert reply.result is None and reply.command == command

    before = len(fake_openai.snapshot())
    after_reset = await send(gateway, "try again")
    # The message reached the LLM again (and failed again, on its own).
    assert len(fake_openai.snapshot()) == before + 1
    assert result_of(after_reset)["error_kind"] == "non_retryable"


async def test_reset_then_working_model_answers(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    await fail(gateway, 3)
    assert is_open(await send(gateway, "blocked"))
    await send(gateway, "/model local:ok-x")
    # /model alone does not close the breaker: only /reset and /new do.
    assert is_open(await send(gateway, "still blocked"))
    await send(gateway, "/reset")
    reply = await send(gateway, "hello")
    assert reply.text == "[ok-x] hello (user messages: 1)"


async def test_success_resets_the_count(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    await fail(gateway, 2)
    await send(gateway, "/model local:ok-x")
    assert result_of(await send(gateway, "works"))["failed"] is False
    await send(gateway, "/model local:bad-primary")
    await fail(gateway, 2)

    before = len(fake_openai.snapshot())
    reply = await send(gateway, "fifth message")
    assert not is_open(reply), "2 failures, a success, 2 failures must leave the breaker closed"
    assert len(fake_openai.snapshot()) == before + 1
    # ...and this third consecutive failure opens it.
    assert is_open(await send(gateway, "sixth"))


async def test_auth_errors_count(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(
        session_breaker_alone(settings_for(fake_openai.url, "auth-primary"))
    )
    await fail(gateway, 3)
    assert is_open(await send(gateway, "blocked"))


@pytest.mark.parametrize(
    ("model", "kind"), [("ratelimit-0-x", "rate_limit"), ("error500-x", "server")]
)
async def test_transient_failures_neither_count_nor_reset(
    make_gateway, fake_openai: FakeOpenAI, model: str, kind: str
) -> None:
    gateway = await make_gateway(
        session_breaker_alone(settings_for(fake_openai.url, "bad-primary"))
    )
    await fail(gateway, 2)
    await send(gateway, f"/model local:{model}")
    for _ in range(3):
        result = result_of(await send(gateway, "transient"))
        assert result["error_kind"] == kind
    # Not counted: three transient failures after two hard ones did not open the breaker.
    await send(gateway, "/model local:bad-primary")
    # Not reset: the count is still 2, so one more hard failure opens it.
    await fail(gateway, 1)
    assert is_open(await send(gateway, "blocked"))


async def test_sessions_are_independent(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    await fail(gateway, 3, "test:a")
    assert is_open(await send(gateway, "blocked", "test:a"))

    await fail(gateway, 2, "test:b")
    reply = await send(gateway, "/model local:ok-x", "test:b")
    assert "ok-x" in reply.text
    assert result_of(await send(gateway, "fine", "test:b"))["failed"] is False
    assert is_open(await send(gateway, "still blocked", "test:a"))

    # Resetting b does nothing to a.
    await send(gateway, "/reset", "test:b")
    assert is_open(await send(gateway, "still blocked", "test:a"))


@pytest.mark.parametrize("threshold", [1, 5])
async def test_threshold_setting_is_honoured(
    make_gateway, fake_openai: FakeOpenAI, threshold: int
) -> None:
    settings = settings_for(
        fake_openai.url, "bad-primary", circuit_breaker={"threshold": threshold}
    )
    gateway = await make_gateway(settings)
    await fail(gateway, threshold - 1)
    assert not is_open(await send(gateway, "one more real try"))
    reply = await send(gateway, "blocked")
    assert is_open(reply)
    assert str(threshold) in reply.text


async def test_cooldown_lets_one_message_through_and_a_success_closes_the_breaker(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    settings = settings_for(fake_openai.url, "bad-primary", circuit_breaker={"cooldown_s": 0.2})
    gateway = await make_gateway(settings)
    await fail(gateway, 3)
    refused = await send(gateway, "blocked")
    assert is_open(refused) and "will be tried again" in refused.text

    await asyncio.sleep(0.25)
    before = len(fake_openai.snapshot())
    trial = result_of(await send(gateway, "the trial"))
    assert trial["error_kind"] == "non_retryable", "one message went through, and failed"
    assert len(fake_openai.snapshot()) == before + 1
    assert is_open(await send(gateway, "blocked again")), "a failed trial reopens it"

    await send(gateway, "/model local:ok-x")  # the model is fixed meanwhile
    assert is_open(await send(gateway, "still waiting"))
    await asyncio.sleep(0.25)
    assert result_of(await send(gateway, "works now"))["failed"] is False
    session = await gateway.session("test:1", "test")
    assert circuit_breaker.status(session).failures == 0
    assert result_of(await send(gateway, "and stays closed"))["failed"] is False


async def test_without_cooldown_the_breaker_stays_open(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    await fail(gateway, 3)
    await asyncio.sleep(0.1)
    reply = await send(gateway, "blocked")
    assert is_open(reply) and "tried again" not in reply.text


async def test_unavailable_runs_are_not_counted_by_the_session_breaker(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    # notfound-* answers 404: its model's gateway-wide breaker opens at once.
    gateway = await make_gateway(settings_for(fake_openai.url, "notfound-primary"))
    assert result_of(await send(gateway, "one"))["error_kind"] == "non_retryable"
    for index in range(5):
        result = result_of(await send(gateway, f"skipped {index}"))
        assert result["error_kind"] == "unavailable" and result["api_calls"] == 0
    session = await gateway.session("test:1", "test")
    assert circuit_breaker.status(session).failures == 1
