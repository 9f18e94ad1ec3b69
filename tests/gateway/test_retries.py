"""Retries, error classification, fallbacks and the shape of every RunResult."""

from __future__ import annotations

import email.utils
import socket
import time
from typing import Any, get_args

import pytest

from hermes_core import hookimpl
from hermes_core.gateway import Gateway
from hermes_core.openai_errors import retry_after_seconds
from hermes_core.testing import FakeOpenAI, send, settings_for
from hermes_core.tools import RegisterTool
from hermes_core.types import ErrorKind, Message, RunResult

#: The contract's RunResult keys and the types each value may have.
RESULT_TYPES: dict[str, tuple[type, ...]] = {
    "failed": (bool,),
    "final_response": (str, type(None)),
    "error": (str, type(None)),
    "error_kind": (str, type(None)),
    "model": (str, type(None)),
    "primary_model": (str, type(None)),
    "fallback_used": (bool,),
    "api_calls": (int,),
    "tool_calls": (int,),
    "duration_s": (float,),
    "usage": (dict, type(None)),
}
ERROR_KINDS = {None, *get_args(ErrorKind)}


def assert_complete(result: RunResult | None) -> RunResult:
    """Every contract key is present with a value of the contract's type, and consistent."""
    assert result is not None
    assert set(result) == set(RESULT_TYPES)
    for key, types in RESULT_TYPES.items():
        value = result[key]  # type: ignore[literal-required]
        # bool is an int: api_calls=True would be a bug, so exclude it explicitly.
        assert isinstance(value, types) and not (types == (int,) and isinstance(value, bool)), (
            f"{key}={value!r} is not {types}"
        )
    assert result["error_kind"] in ERROR_KINDS
    assert result["duration_s"] >= 0
    assert result["api_calls"] >= 0 and result["tool_calls"] >= 0
    if result["failed"]:
        assert result["error_kind"] is not None and result["error"]
        assert result["final_response"], "a failed run still tells the user something"
    else:
        assert result["error_kind"] is None and result["error"] is None
    return result


def local(settings: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Set options of the scripted provider ``local``."""
    settings["providers"]["local"].update(options)
    return settings


async def run(gateway: Gateway, text: str = "hello") -> RunResult:
    return assert_complete((await send(gateway, text)).result)


@pytest.mark.slow
async def test_retry_after_is_honoured(make_gateway, fake_openai: FakeOpenAI) -> None:
    settings = local(settings_for(fake_openai.url, "ratelimit-0.2-x"), max_retries=2)
    result = await run(await make_gateway(settings))
    assert result["failed"] is True
    assert result["error_kind"] == "rate_limit"
    assert result["api_calls"] == 3
    assert len(fake_openai.requests_for("ratelimit-0.2-x")) == 3
    assert result["duration_s"] >= 0.4  # two waits of Retry-After: 0.2


@pytest.mark.slow
@pytest.mark.parametrize(("retry_after", "least_wait_s"), [("soon", 0.5), ("date", 0.0)])
async def test_an_unparsable_or_dated_retry_after_is_retried_then_falls_back(
    make_gateway, fake_openai: FakeOpenAI, retry_after: str, least_wait_s: float
) -> None:
    model = f"ratelimit-{retry_after}-x"
    settings = local(settings_for(fake_openai.url, model, ["ok-y"]), max_retries=1)
    result = await run(await make_gateway(settings))
    assert [r.model for r in fake_openai.snapshot()] == [model, model, "ok-y"]
    assert result["failed"] is False
    assert result["fallback_used"] is True
    assert result["final_response"] == "[ok-y] hello (user messages: 1)"
    # "soon" is ignored, so the normal backoff (0.5 s) applies; a date one second ahead
    # (whole seconds) means a wait of at most a second.
    assert least_wait_s <= result["duration_s"] < 5


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "-1"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past: go now
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    ahead = email.utils.formatdate(time.time() + 30, usegmt=True)
    naive = email.utils.formatdate(time.time() + 30)  # "-0000": UTC, but parsed without a zone
    for value in (ahead, naive):
        wait = retry_after_seconds({"retry-after": value})
        assert wait is not None and 28 <= wait <= 30, value


async def test_max_retry_wait_caps_a_long_retry_after(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    # The retry loop alone: with health on, a 30 s Retry-After opens the model at once and
    # the run falls over instead of retrying (tests/gateway/test_health.py).
    settings = local(
        settings_for(fake_openai.url, "ratelimit-30-x"),
        max_retries=1,
        max_retry_wait_s=0.1,
        breaker={"enabled": False},
    )
    result = await run(await make_gateway(settings))
    assert result["error_kind"] == "rate_limit"
    assert result["api_calls"] == 2
    assert 0.1 <= result["duration_s"] < 10


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param(
            "flaky-2-x",
            {
                "failed": False,
                "api_calls": 3,
                "final_response": "[flaky-2-x] hello (user messages: 1)",
                "fallback_used": False,
            },
            id="two 503s: answered by the last retry",
        ),
        pytest.param(
            "flaky-3-x",
            {"failed": True, "error_kind": "server", "api_calls": 3},
            id="three 503s: beyond the budget, fails as server",
        ),
    ],
)
async def test_a_flaky_server_is_retried_max_retries_times(
    make_gateway, fake_openai: FakeOpenAI, model: str, expected: dict[str, Any]
) -> None:
    settings = local(settings_for(fake_openai.url, model), max_retries=2, max_retry_wait_s=0.05)
    result = await run(await make_gateway(settings))
    assert {key: result[key] for key in expected} == expected  # type: ignore[literal-required]


async def test_max_retries_zero_means_a_single_call(make_gateway, fake_openai: FakeOpenAI) -> None:
    settings = local(settings_for(fake_openai.url, "error500-x"), max_retries=0)
    result = await run(await make_gateway(settings))
    assert result["error_kind"] == "server"
    assert result["api_calls"] == 1
    assert len(fake_openai.snapshot()) == 1


async def test_400_is_never_retried_and_fails_over(make_gateway, fake_openai: FakeOpenAI) -> None:
    settings = local(settings_for(fake_openai.url, "bad-x", ["ok-y"]), max_retries=2)
    result = await run(await make_gateway(settings))
    assert [r.model for r in fake_openai.snapshot()] == ["bad-x", "ok-y"]
    assert result["api_calls"] == 2
    assert result["failed"] is False
    assert result["fallback_used"] is True
    assert result["model"] == "local:ok-y"
    assert result["primary_model"] == "local:bad-x"


async def test_quota_exhaustion_is_not_retried(make_gateway, fake_openai: FakeOpenAI) -> None:
    settings = local(settings_for(fake_openai.url, "quota-x"), max_retries=2)
    result = await run(await make_gateway(settings))
    assert result["error_kind"] == "non_retryable"
    assert result["api_calls"] == 1


@pytest.mark.slow
async def test_hanging_server_times_out(make_gateway, fake_openai: FakeOpenAI) -> None:
    settings = local(settings_for(fake_openai.url, "hang-x"), timeout_s=0.5)
    result = await run(await make_gateway(settings))
    assert result["error_kind"] == "timeout"
    assert result["api_calls"] == 1
    assert 0.4 <= result["duration_s"] < 10


@pytest.mark.parametrize("model", ["garbage-x", "nochoices-x"])
async def test_malformed_responses_fail_cleanly(
    make_gateway, fake_openai: FakeOpenAI, model: str
) -> None:
    result = await run(await make_gateway(settings_for(fake_openai.url, model)))
    assert result["failed"] is True
    assert result["error_kind"] == "server"
    assert "malformed" in (result["error"] or "")


async def test_connection_refused(make_gateway, fake_openai: FakeOpenAI) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_for(f"http://127.0.0.1:{port}/v1", "ok-x")
    result = await run(await make_gateway(settings))
    assert result["error_kind"] == "connection"
    assert result["api_calls"] == 1


async def test_result_shape_on_success(make_gateway) -> None:
    result = await run(await make_gateway())
    assert result["failed"] is False
    assert result["model"] == result["primary_model"] == "local:ok-primary"
    assert result["fallback_used"] is False
    assert result["api_calls"] == 1 and result["tool_calls"] == 0


async def test_result_shape_when_every_model_fails(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-a", ["auth-b"]))
    result = await run(gateway)
    assert result["failed"] is True
    assert result["error_kind"] == "auth"  # the last model's error
    assert result["model"] == "local:auth-b"
    assert result["primary_model"] == "local:bad-a"
    assert result["fallback_used"] is True
    assert result["api_calls"] == 2


async def test_result_shape_on_short_circuit(make_gateway, register_plugin) -> None:
    class Refuse:
        @hookimpl
        def pre_run(self, message: Message) -> dict[str, Any]:
            return {"final_response": "no"}

    register_plugin(Refuse())
    result = await run(await make_gateway())
    assert result["final_response"] == "no"
    assert result["api_calls"] == 0


async def test_result_shape_on_internal_error(make_gateway, register_plugin) -> None:
    class Broken:
        @hookimpl
        def pre_run(self, message: Message) -> None:
            raise RuntimeError("boom")

    register_plugin(Broken())
    result = await run(await make_gateway())
    assert result["error_kind"] == "internal"
    assert "boom" in (result["error"] or "")


async def test_a_run_never_returns_to_the_primary_after_failing_over(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    class EchoTool:
        @hookimpl
        def register_tools(self, register: RegisterTool) -> None:
            register("echo", lambda arguments: "echoed")

    register_plugin(EchoTool())
    # flaky-1-a fails only its first request: had the run gone back to the primary for the
    # second completion (after the tool call), that request would have succeeded there.
    gateway = await make_gateway(settings_for(fake_openai.url, "flaky-1-a", ["tool-b"]))
    result = await run(gateway, "call echo {}")
    assert [r.model for r in fake_openai.snapshot()] == ["flaky-1-a", "tool-b", "tool-b"]
    assert result["failed"] is False
    assert result["final_response"] == "tool results: echoed"
    assert result["model"] == "local:tool-b"
    assert result["fallback_used"] is True
    assert result["api_calls"] == 3
    assert result["tool_calls"] == 1


async def test_retries_are_spent_before_failing_over(
    make_gateway, fake_openai: FakeOpenAI, hook_recorder
) -> None:
    settings = local(
        settings_for(fake_openai.url, "error500-a", ["ok-b"]), max_retries=1, max_retry_wait_s=0.05
    )
    result = await run(await make_gateway(settings))
    assert [r.model for r in fake_openai.snapshot()] == ["error500-a", "error500-a", "ok-b"]
    assert result["api_calls"] == 3
    assert result["fallback_used"] is True and result["failed"] is False
    assert [(c["from_model"], c["to_model"]) for c in hook_recorder.of("on_fallback")] == [
        ("local:error500-a", "local:ok-b")
    ]
