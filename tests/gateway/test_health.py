"""Gateway-wide model health, end to end against the scripted OpenAI server over HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hermes_core.gateway import Gateway
from hermes_core.plugins import circuit_breaker
from hermes_core.plugins.metrics import metrics_for
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for
from hermes_core.types import RunResult

FALLBACK = "ok-fallback"


def health_settings(
    url: str, model: str, fallbacks: list[str] | None = None, **breaker: Any
) -> dict[str, Any]:
    """Settings for ``local:model`` then ``fallbacks``, with ``providers.local.breaker``."""
    settings = settings_for(url, model, fallbacks)
    settings["providers"]["local"]["breaker"] = breaker
    return settings


#: ``await make_gateway(settings)``, and ``await health_gateway(model, ...)``.
MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def health_gateway(make_gateway: MakeGateway, fake_openai: FakeOpenAI) -> MakeGateway:
    """``await health_gateway(model, fallbacks=[FALLBACK], **breaker)``: a started gateway
    from :func:`health_settings`."""

    async def make(model: str, fallbacks: list[str] | None = None, **breaker: Any) -> Gateway:
        settings = health_settings(fake_openai.url, model, fallbacks or [FALLBACK], **breaker)
        return await make_gateway(settings)

    return make


def closed_port() -> int:
    """A port that was free a moment ago: nobody listens there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def run(gateway: Gateway, text: str = "hello", session_key: str = "test:1") -> RunResult:
    result = (await send(gateway, text, session_key)).result
    assert result is not None
    return result


def transitions(recorder: HookRecorder) -> list[tuple[str, str | None, str]]:
    return [(c["provider"], c["model"], c["state"]) for c in recorder.of("on_health_change")]


@pytest.mark.parametrize(
    ("down", "expected_requests"),
    [("refused", 3), ("error500-primary", 3), ("notfound-primary", 1)],
)
async def test_a_dead_primary_costs_its_failures_then_is_skipped(
    make_gateway,
    fake_openai: FakeOpenAI,
    hook_recorder: HookRecorder,
    down: str,
    expected_requests: int,
) -> None:
    settings = health_settings(fake_openai.url, "ok-unused", [FALLBACK], cooldown_s=60)
    if down == "refused":
        dead = {"base_url": f"http://127.0.0.1:{closed_port()}/v1", "max_retries": 0}
        settings["providers"]["dead"] = dead
        settings["agent"]["model"] = "dead:ok-primary"
    else:
        settings["agent"]["model"] = f"local:{down}"
    gateway = await make_gateway(settings)

    results = [await run(gateway, f"message {n}", f"test:{n % 4}") for n in range(12)]

    assert all(not r["failed"] and r["fallback_used"] for r in results)
    assert all(r["final_response"].startswith(f"[{FALLBACK}]") for r in results)  # type: ignore[union-attr]
    primary = [r for r in fake_openai.snapshot() if r.model != FALLBACK]
    # Only the requests that opened its breaker: the other runs skipped it without sending.
    assert len(primary) == (0 if down == "refused" else expected_requests)
    assert sum(r["api_calls"] for r in results) == expected_requests + 12
    skips = [c["error"] for c in hook_recorder.of("on_fallback")][expected_requests:]
    assert len(skips) == 12 - expected_requests
    assert all(error.startswith("skipped ") for error in skips)
    opened = transitions(hook_recorder)
    target = ("dead", None) if down == "refused" else ("local", down)
    assert opened == [(*target, "open")]


async def test_hook_on_health_change(
    health_gateway: MakeGateway, hook_recorder: HookRecorder
) -> None:
    gateway = await health_gateway("notfound-x", cooldown_s=45)
    before = time.time()
    await run(gateway)
    [call] = hook_recorder.of("on_health_change")
    assert (call["provider"], call["model"], call["state"]) == ("local", "notfound-x", "open")
    assert "HTTP 404" in call["reason"]
    assert before + 44 <= call["retry_at"] <= time.time() + 45
    assert call["gateway"] is gateway


async def test_the_primary_coming_back_is_probed_once_and_runs_return_to_it(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    # flaky-3-*: its first three requests fail with 503, then it answers: down, then back.
    gateway = await health_gateway("flaky-3-primary", cooldown_s=0.2)
    results = [await run(gateway, f"during {n}", f"test:{n}") for n in range(6)]
    assert transitions(hook_recorder) == [("local", "flaky-3-primary", "open")]
    await asyncio.sleep(0.25)
    results += [await run(gateway, f"after {n}", f"test:{n}") for n in range(4)]

    assert not any(r["failed"] for r in results), "the fallback could answer every run"
    assert [r["model"] for r in results[6:]] == ["local:flaky-3-primary"] * 4
    assert transitions(hook_recorder) == [
        ("local", "flaky-3-primary", state) for state in ("open", "half_open", "closed")
    ]
    # Three failures, the probe, then three runs: no request was spent during the cooldown.
    assert len(fake_openai.requests_for("flaky-3-primary")) == 3 + 1 + 3


async def test_a_failed_probe_doubles_the_cooldown(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await health_gateway("notfound-x", cooldown_s=0.2)
    await run(gateway)
    await asyncio.sleep(0.25)
    probed_at = time.time()
    await run(gateway)  # the probe: 404 again
    reopened = hook_recorder.of("on_health_change")[-1]
    assert reopened["state"] == "open" and reopened["reason"].startswith("probe failed")
    assert probed_at + 0.35 <= reopened["retry_at"] <= time.time() + 0.4
    assert len(fake_openai.requests_for("notfound-x")) == 2


async def test_429_with_retry_after_opens_for_that_long(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await health_gateway("ratelimit-0.3-x", cooldown_s=60)
    sent = time.time()
    assert (await run(gateway))["model"] == f"local:{FALLBACK}"
    [opened] = hook_recorder.of("on_health_change")
    assert opened["state"] == "open"
    # Open at once (one 429, not three) and for the Retry-After, not the 60 s cooldown.
    assert sent + 0.25 <= opened["retry_at"] <= time.time() + 0.3
    await run(gateway)
    assert len(fake_openai.requests_for("ratelimit-0.3-x")) == 1
    await asyncio.sleep(0.35)
    await run(gateway)
    assert len(fake_openai.requests_for("ratelimit-0.3-x")) == 2


async def test_a_long_retry_after_falls_over_at_once_instead_of_waiting(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    settings = health_settings(fake_openai.url, "ratelimit-30-x", [FALLBACK])
    settings["providers"]["local"].update(max_retries=2, max_retry_wait_s=5)
    result = await run(await make_gateway(settings))
    assert result["model"] == f"local:{FALLBACK}" and not result["failed"]
    assert result["duration_s"] < 1, "no retry wait for a model open for 30 s"
    assert len(fake_openai.requests_for("ratelimit-30-x")) == 1


async def test_a_plain_400_leaves_health_alone(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    # bad-* answers 400 model_not_found: a 400 is about the request, whatever its code says.
    gateway = await health_gateway("bad-x")
    for _ in range(5):
        await run(gateway)
    assert len(fake_openai.requests_for("bad-x")) == 5
    assert hook_recorder.of("on_health_change") == []
    assert gateway.health.snapshot()[-1]["state"] == "closed"


async def test_every_model_open_fails_fast_as_unavailable_and_is_not_counted(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await health_gateway("notfound-a", ["notfound-b"], cooldown_s=60)
    first = await run(gateway)
    assert first["error_kind"] == "non_retryable"  # two real 404s: the session counts one
    later = [await run(gateway) for _ in range(5)]

    assert all(r["error_kind"] == "unavailable" and r["api_calls"] == 0 for r in later)
    assert all(r["duration_s"] < 0.1 for r in later)
    assert "next attempt in 60s" in (later[0]["final_response"] or "")
    assert len(fake_openai.snapshot()) == 2
    session = await gateway.session("test:1", "test")
    assert circuit_breaker.status(session).failures == 1  # unavailable is never counted


async def test_a_rejected_key_opens_the_provider_and_its_probes_count_for_the_session(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await health_gateway("auth-x", cooldown_s=0.1)
    kinds = [(await run(gateway))["error_kind"]]
    # The 401 is the provider's: every model of it is skipped, the fallback too.
    kinds.append((await run(gateway))["error_kind"])
    assert transitions(hook_recorder)[0] == ("local", None, "open")
    await asyncio.sleep(0.15)
    kinds.append((await run(gateway))["error_kind"])  # the probe: 401 again, cooldown 0.2
    await asyncio.sleep(0.25)
    kinds.append((await run(gateway))["error_kind"])  # the session's third hard failure
    kinds.append((await run(gateway))["error_kind"])
    assert kinds == ["auth", "unavailable", "auth", "auth", "circuit_open"]
    assert len(fake_openai.snapshot()) == 3


async def test_health_off_sends_every_request(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await health_gateway("notfound-x", enabled=False)
    for _ in range(5):
        await run(gateway)
    assert len(fake_openai.requests_for("notfound-x")) == 5
    assert gateway.health.snapshot() == []


async def test_an_active_probe_brings_the_primary_back_without_a_user_waiting(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await health_gateway("flaky-3-primary", cooldown_s=0.2, probe="active")
    for n in range(3):
        await run(gateway, f"during {n}")
    await asyncio.sleep(0.3)  # due now, but with active probes a run would still skip it
    assert transitions(hook_recorder)[-1][2] == "closed", "the gateway probed by itself"
    probe = fake_openai.requests_for("flaky-3-primary")[-1]
    assert probe.messages == [{"role": "user", "content": "ping"}]
    assert (await run(gateway, "after"))["model"] == "local:flaky-3-primary"
    assert transitions(hook_recorder) == [
        ("local", "flaky-3-primary", state) for state in ("open", "half_open", "closed")
    ]


async def test_active_probes_repeat_with_a_doubling_cooldown_and_stop_at_shutdown(
    health_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await health_gateway("notfound-x", cooldown_s=0.1, probe="active")
    await run(gateway)
    await asyncio.sleep(0.38)  # probes at 0.1 s and 0.3 s (the cooldown doubled to 0.2)
    assert len(fake_openai.requests_for("notfound-x")) == 3
    assert (await run(gateway))["model"] == f"local:{FALLBACK}"
    await gateway.stop()
    probes = [t for t in asyncio.all_tasks() if t.get_name().startswith("hermes-core probe")]
    assert probes == []


async def test_status_shows_each_models_health(health_gateway: MakeGateway) -> None:
    gateway = await health_gateway("notfound-x", cooldown_s=60)
    assert "Health: local:notfound-x closed" in (await send(gateway, "/status")).text
    await run(gateway)
    status = (await send(gateway, "/status")).text
    assert f"Health: local:{FALLBACK} closed" in status
    [line] = [line for line in status.splitlines() if line.startswith("Health: local:notfound")]
    assert line.startswith("Health: local:notfound-x open until ") and "HTTP 404" in line


async def test_metrics_gauge_each_models_state(health_gateway: MakeGateway) -> None:
    gateway = await health_gateway("notfound-x", cooldown_s=60)
    await run(gateway)
    metrics = metrics_for(gateway)
    assert metrics is not None
    families = text_string_to_metric_families(metrics.exposition()[0].decode())
    [family] = [f for f in families if f.name == "hermes_model_health"]
    current = {(s.labels["model"], s.labels["state"]) for s in family.samples if s.value == 1}
    assert current == {("local:notfound-x", "open"), (f"local:{FALLBACK}", "closed")}
    assert len(family.samples) == 2 * 3
