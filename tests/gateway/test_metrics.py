"""The built-in ``metrics`` plugin: Prometheus text scraped over real HTTP after scripted runs
against the fake OpenAI server, the ``metrics.port`` server, MCP servers read at scrape time,
and the ``on_llm_request`` hook that times each LLM request."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp_servers.helpers import (
    accepts,
    eventually,
    free_port,
    toolbox_spec,
)
from prometheus_client.parser import text_string_to_metric_families

from hermes_core import hookimpl
from hermes_core.errors import ConfigError
from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.mcp.connection import ServerState
from hermes_core.plugins.http import HttpPlatform
from hermes_core.settings import config_from_dict
from hermes_core.store import MemoryStore
from hermes_core.testing import FakeOpenAI, HookRecorder, ServeHttp, send, settings_for

KEY = "sk-metrics-test"
MARKER = f"test-metrics-{uuid.uuid4().hex}"


class Stamp:
    """A ``register_tools`` tool the ``tool-*`` models can call."""

    @hookimpl
    def register_tools(self, register: Any) -> None:
        register("stamp", lambda arguments: f"stamped {arguments.get('n')}", "Stamp a number.")


async def scrape(url: str, api_key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx2.AsyncClient(timeout=30) as client:
        response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels`` in Prometheus text, or None if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample ``name`` by its labels (sorted label pairs)."""
    return {
        tuple(sorted(sample.labels.items())): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


# --- runs, LLM requests, tool calls, the breaker ----------------------------------------------


async def test_scrape_counts_ok_tool_failed_and_breaker_runs_exactly(
    serve_http: ServeHttp, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    register_plugin(Stamp(), "stamp")
    settings = settings_for(fake_openai.url, "ok-primary")
    # The scripted 401 is one model's: health off, or it would (rightly) skip the provider.
    settings["providers"]["local"]["breaker"] = {"enabled": False}
    gateway, platform = await serve_http(settings)
    assert (await send(gateway, "hello", "test:ok")).text.startswith("[ok-primary] hello")
    await send(gateway, "/model local:tool-t", "test:tool")
    reply = await send(gateway, 'call stamp {"n": 7}', "test:tool")
    assert reply.text == "tool results: stamped 7"
    await send(gateway, "/model local:auth-f", "test:fail")
    for n in range(3):
        failed = await send(gateway, f"try {n}", "test:fail")
        assert failed.result is not None and failed.result["error_kind"] == "auth"
    refused = await send(gateway, "once more", "test:fail")  # the breaker is open now
    assert refused.result is not None and refused.result["error_kind"] == "circuit_open"

    text = await scrape(f"{platform.url}/metrics")

    assert series(text, "hermes_runs_total") == {
        (("error_kind", "none"), ("outcome", "ok")): 2,
        (("error_kind", "auth"), ("outcome", "failed")): 3,
        (("error_kind", "circuit_open"), ("outcome", "failed")): 1,
    }
    assert value(text, "hermes_run_duration_seconds_count", outcome="ok") == 2
    assert value(text, "hermes_run_duration_seconds_count", outcome="failed") == 4
    assert value(text, "hermes_tool_calls_total") == 1
    assert series(text, "hermes_llm_request_duration_seconds_count") == {
        (("model", "local:ok-primary"), ("outcome", "ok")): 1,
        (("model", "local:tool-t"), ("outcome", "ok")): 2,
        (("model", "local:auth-f"), ("outcome", "failed")): 3,
    }
    assert series(text, "hermes_llm_request_errors_total") == {
        (("error_kind", "auth"), ("model", "local:auth-f")): 3
    }
    assert len(fake_openai.requests) == 6  # what the histogram counted, request for request
    assert series(text, "hermes_evictions_total") == {(("reason", "circuit_open"),): 1}
    assert value(text, "hermes_circuit_breaker_openings_total") == 1
    assert series(text, "hermes_fallbacks_total") == {}
    # test:ok and test:tool keep their agents; the breaker evicted test:fail's.
    assert value(text, "hermes_cached_agents") == 2 == len(gateway.cache)
    assert value(text, "hermes_runs_in_flight") == 0
    # Latency is what the runs measured: the sum of the histogram is the sum of duration_s.
    total = value(text, "hermes_run_duration_seconds_sum", outcome="ok")
    assert total is not None and total > 0


async def test_scrape_counts_fallbacks_and_their_evictions(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    gateway, platform = await serve_http(
        settings_for(fake_openai.url, "bad-primary", ["ok-fallback"])
    )
    for text in ("one", "two"):
        reply = await send(gateway, text)
        assert reply.result is not None and reply.result["fallback_used"]

    text = await scrape(f"{platform.url}/metrics")

    assert series(text, "hermes_fallbacks_total") == {
        (("from_model", "local:bad-primary"), ("to_model", "local:ok-fallback")): 2
    }
    assert series(text, "hermes_evictions_total") == {(("reason", "fallback_succeeded"),): 2}
    assert value(text, "hermes_runs_total", outcome="ok", error_kind="none") == 2
    assert series(text, "hermes_llm_request_errors_total") == {
        (("error_kind", "non_retryable"), ("model", "local:bad-primary")): 2
    }
    assert series(text, "hermes_llm_request_duration_seconds_count") == {
        (("model", "local:bad-primary"), ("outcome", "failed")): 2,
        (("model", "local:ok-fallback"), ("outcome", "ok")): 2,
    }
    assert value(text, "hermes_circuit_breaker_openings_total") == 0
    assert value(text, "hermes_cached_agents") == 0  # each success on a fallback evicted


async def test_metrics_need_the_api_key_when_the_api_has_keys(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(settings_for(fake_openai.url), api_keys=[KEY])
    async with httpx2.AsyncClient(timeout=30) as client:
        missing = await client.get(f"{platform.url}/metrics")
        wrong = await client.get(f"{platform.url}/metrics", headers={"Authorization": "Bearer x"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert "hermes_runs_total" in await scrape(f"{platform.url}/metrics", KEY)


async def test_openmetrics_is_served_when_asked_for(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(settings_for(fake_openai.url))
    async with httpx2.AsyncClient(timeout=30) as client:
        response = await client.get(
            f"{platform.url}/metrics", headers={"Accept": "application/openmetrics-text"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_each_gateway_counts_only_its_own_runs(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    from hermes_core.plugins.metrics import metrics_for

    first = await make_gateway(settings_for(fake_openai.url))
    second_settings = settings_for(fake_openai.url, "auth-second")
    # Each run must reach the scripted 401: health off, or the second would be skipped.
    second_settings["providers"]["local"]["breaker"] = {"enabled": False}
    second = await make_gateway(second_settings)
    await send(first, "hi")
    await send(second, "hi")
    await send(second, "again")
    texts = []
    for gateway in (first, second):
        metrics = metrics_for(gateway)
        assert metrics is not None
        texts.append(metrics.exposition()[0].decode())
    assert series(texts[0], "hermes_runs_total") == {(("error_kind", "none"), ("outcome", "ok")): 1}
    assert series(texts[1], "hermes_runs_total") == {
        (("error_kind", "none"), ("outcome", "ok")): 0,
        (("error_kind", "auth"), ("outcome", "failed")): 2,
    }


# --- the plugin disabled ------------------------------------------------------------------


async def test_disabled_metrics_plugin_gives_404_and_no_error(
    fake_openai: FakeOpenAI, errors_logged: list[str]
) -> None:
    host = PluginHost()
    host.load(["metrics"], entry_points=False)
    record = host.record("metrics")
    assert record is not None and record.status == "disabled"
    table = {"enabled": True, "port": 0}
    settings = settings_for(fake_openai.url, plugins={"disabled": ["metrics"]})
    gateway = Gateway(config_from_dict(settings), host, store=MemoryStore())
    await gateway.start()
    platform = HttpPlatform(gateway, table)
    await platform.start()
    try:
        assert (await send(gateway, "hi")).text.startswith("[ok-primary] hi")
        async with httpx2.AsyncClient(timeout=30) as client:
            response = await client.get(f"{platform.url}/metrics")
    finally:
        await platform.stop()
        await gateway.stop()
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        "metrics are off: the metrics plugin is disabled"
    )
    assert errors_logged == []


# --- metrics.port -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_metrics_port_serves_and_closes_with_the_gateway(
    fake_openai: FakeOpenAI, plugin_host: PluginHost
) -> None:
    port = free_port()
    settings = settings_for(fake_openai.url, metrics={"port": port})
    gateway = Gateway(config_from_dict(settings), plugin_host, store=MemoryStore())
    await gateway.start()
    try:
        await send(gateway, "hi")
        text = await scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(text, "hermes_runs_total", outcome="ok", error_kind="none") == 1
        async with httpx2.AsyncClient(timeout=30) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 404
    finally:
        await gateway.stop()
    assert not accepts(port), "the metrics port is still open after gateway.stop()"


async def test_metrics_port_taken_is_one_error_line_and_chats_go_on(
    fake_openai: FakeOpenAI, plugin_host: PluginHost, errors_logged: list[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(fake_openai.url, metrics={"port": port})
        gateway = Gateway(config_from_dict(settings), plugin_host, store=MemoryStore())
        await gateway.start()
        try:
            assert (await send(gateway, "hi")).text.startswith("[ok-primary] hi")
        finally:
            await gateway.stop()
    assert len(errors_logged) == 1
    assert errors_logged[0].startswith(f"metrics: cannot listen on 127.0.0.1:{port} (")
    assert errors_logged[0].endswith("set metrics.port to a free port")


@pytest.mark.parametrize("port", [-1, 65536, "9100"])
def test_bad_metrics_port_names_the_key(fake_openai: FakeOpenAI, port: Any) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        config_from_dict(settings_for(fake_openai.url, metrics={"port": port}))


# --- MCP servers, read from the pool at scrape time -----------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("no_leaked_servers")
async def test_mcp_servers_processes_and_restarts_are_scraped(
    serve_http: ServeHttp, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = settings_for(
        fake_openai.url,
        "tool-primary",
        mcp={
            "eager": True,
            "backoff_initial_s": 0.1,
            "servers": {
                "toolbox": toolbox_spec(MARKER, tmp_path / "pids"),
                "spare": {**toolbox_spec(MARKER), "enabled": False},
            },
        },
    )
    settings["providers"]["local"]["timeout_s"] = 60
    gateway, platform = await serve_http(settings)
    connection = gateway.mcp_pool.connections["toolbox"]
    await eventually(lambda: connection.state is ServerState.READY, "the toolbox to be ready")
    url = f"{platform.url}/metrics"

    text = await scrape(url)
    assert series(text, "hermes_mcp_servers") == {
        (("state", "idle"),): 0,
        (("state", "starting"),): 0,
        (("state", "ready"),): 1,
        (("state", "backoff"),): 0,
        (("state", "failed"),): 0,
        (("state", "stopped"),): 0,
        (("state", "disabled"),): 1,
    }
    assert value(text, "hermes_mcp_processes") == 1
    assert value(text, "hermes_mcp_server_starts_total", server="toolbox") == 1
    assert value(text, "hermes_mcp_server_restarts_total", server="toolbox") == 0
    assert value(text, "hermes_mcp_server_restarts_total", server="spare") == 0

    await send(gateway, "call crash")  # the server's process exits mid-call
    await eventually(
        lambda: connection.restarts == 1 and connection.state is ServerState.READY,
        "the toolbox to restart",
    )
    text = await scrape(url)
    assert value(text, "hermes_mcp_server_starts_total", server="toolbox") == 2
    assert value(text, "hermes_mcp_server_restarts_total", server="toolbox") == 1
    assert value(text, "hermes_mcp_processes") == 1
    assert value(text, "hermes_tool_calls_total") == 1


# --- the on_llm_request hook ----------------------------------------------------------------


@pytest.mark.slow
async def test_hook_on_llm_request(
    make_gateway: Any, hook_recorder: HookRecorder, fake_openai: FakeOpenAI
) -> None:
    """Once per request, retries and fallbacks included, on the run's session and agent, with
    the request's own duration and error_kind, before the fallback it leads to."""
    settings = settings_for(fake_openai.url, "bad-primary", ["flaky-1-fb"])
    settings["providers"]["local"]["max_retries"] = 1
    gateway = await make_gateway(settings)
    reply = await send(gateway, "hi")
    assert reply.result is not None and not reply.result["failed"]

    observed = [
        (call.hook, call.kwargs.get("model") or call.kwargs.get("to_model"))
        for call in hook_recorder.calls
        if call.hook in ("on_llm_request", "on_fallback")
    ]
    assert observed == [
        ("on_llm_request", "local:bad-primary"),
        ("on_fallback", "local:flaky-1-fb"),
        ("on_llm_request", "local:flaky-1-fb"),
        ("on_llm_request", "local:flaky-1-fb"),
    ]
    requests = hook_recorder.of("on_llm_request")
    assert [r["error_kind"] for r in requests] == ["non_retryable", "server", None]
    assert len(requests) == reply.result["api_calls"] == len(fake_openai.requests)
    [run] = hook_recorder.of("post_run")
    assert all(r["session"] is run["session"] and r["agent"] is run["agent"] for r in requests)
    # Each duration is that request alone: together less than the run, which also waited
    # before the retry (0.5 s backoff).
    durations = [r["duration_s"] for r in requests]
    assert all(d > 0 for d in durations)
    assert sum(durations) < reply.result["duration_s"] - 0.4


async def test_tokens_are_counted_per_provider_and_model(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    gateway, platform = await serve_http(settings_for(fake_openai.url, "bad-primary", ["ok-fb"]))
    reply = await send(gateway, "count my tokens", "test:tokens")
    assert reply.result is not None and reply.result["usage"] is not None
    usage = reply.result["usage"]

    text = await scrape(f"{platform.url}/metrics")

    # Only the request that was answered reported tokens, under the model that answered it.
    assert series(text, "hermes_llm_tokens_total") == {
        (("kind", "completion"), ("model", "local:ok-fb"), ("provider", "local")): float(
            usage["completion_tokens"]
        ),
        (("kind", "prompt"), ("model", "local:ok-fb"), ("provider", "local")): float(
            usage["prompt_tokens"]
        ),
    }
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
