"""Smoke tests of bench/: every benchmark runs end to end with tiny counts and returns rows of
the right shape. Nothing here is timed: the numbers are checked for shape, never for speed.

The benchmarks talk to real local processes (the scripted OpenAI server, ``hermes-core run``,
MCP servers, ``pip``), exactly as ``bench/run.py`` does.
"""

from __future__ import annotations

import importlib
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    """The bench modules, imported as ``bench/run.py`` imports them (bench/ on sys.path)."""
    sys.path.insert(0, str(BENCH))
    try:
        names = (
            "support",
            "run",
            "mcp_starts",
            "overhead",
            "throughput",
            "agent_memory",
            "startup",
            "http_load",
            "sse_latency",
            "model_health",
        )
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def server_url(bench: dict[str, ModuleType]) -> Iterator[str]:
    """The scripted OpenAI server, as a process."""
    with bench["support"].scripted_server() as url:
        yield url


def check_rows(rows: list[Any], count: int, *, baseline: bool = True) -> None:
    """``count`` rows, each with a name, a unit, a finite value and, when ``baseline``, a
    positive baseline and the ratio of the two."""
    assert len(rows) == count, rows
    for row in rows:
        assert row.benchmark and row.unit, row
        assert math.isfinite(row.value), row
        if baseline:
            assert row.baseline is not None and row.baseline > 0, row
            assert row.ratio == pytest.approx(row.value / row.baseline), row


async def test_mcp_starts_counts_one_pool_process_per_policy(
    bench: dict[str, ModuleType], server_url: str
) -> None:
    policies = bench["mcp_starts"].POLICIES
    defaults, evict_always = policies[0], policies[-1]
    assert "defaults" in defaults[0] and "evict-always, circuit_breaker off" in evict_always[0]
    run = bench["run"]
    rows = await run.mcp_start_rows(server_url, messages=4, policies=[defaults, evict_always])
    check_rows(rows, 2)
    # The pool starts the one server once, whatever the policy does to agents...
    assert [row.value for row in rows] == [1, 1]
    # ...while a per-agent design spawns one per agent: 4 under evict-always with no breaker.
    assert [row.baseline for row in rows] == [1, 4]


async def test_latency_rows_over_http_and_in_process(
    bench: dict[str, ModuleType], server_url: str
) -> None:
    overhead = bench["overhead"]
    http = await overhead.http_rows(server_url, messages=4, per_session=2)
    check_rows(http, 2)
    in_process = await overhead.gateway_rows(server_url, messages=4, per_session=2)
    check_rows(in_process, 3)
    assert all(row.value > 0 for row in http + in_process)


async def test_throughput_rows(bench: dict[str, ModuleType], server_url: str) -> None:
    rows = await bench["throughput"].rows(server_url, sessions=3, per_session=2, connections=2)
    check_rows(rows, 1)
    assert rows[0].value > 0


async def test_model_health_counts_the_primarys_requests_with_health_on_and_off(
    bench: dict[str, ModuleType], server_url: str
) -> None:
    model_health = bench["model_health"]
    # One session, its messages in turn: a second session started a guessed 10 ms after the
    # first raced the first 404 on a busy host (the primary then got 2 requests, not 1).
    results = await model_health.measure_all(
        server_url, sessions=1, messages=2, stagger_s=0, latency_messages=3
    )
    assert [name for name, *_ in results] == ["connection refused", "HTTP 500", "HTTP 404"]
    for name, on, off, healthy in results:
        assert on.failed_runs == off.failed_runs == 0, name  # the fallback answered every one
        assert on.primary_requests < off.primary_requests, name
        assert on.median_s > 0 and healthy.median_s > 0, name
    _, not_found_on, not_found_off, _ = results[-1]
    # The first 404 takes the primary out: the second message never tries it.
    assert (not_found_on.primary_requests, not_found_off.primary_requests) == (1, 2)
    check_rows(model_health.rows(results), 6)
    assert len(model_health.table(results, 1, 2).splitlines()) == 4 + 3


async def test_agent_memory_rows(bench: dict[str, ModuleType], server_url: str) -> None:
    # A few agents move RSS by less than a page: only the shape is checked, not the size.
    rows = await bench["agent_memory"].rows(server_url, agents=3)
    check_rows(rows, 2, baseline=False)
    assert rows[1].value > 0  # the whole process's RSS


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make servers)")
def test_http_load_measures_every_target_and_counts_failed_runs(
    bench: dict[str, ModuleType],
) -> None:
    http_load = bench["http_load"]
    results = http_load.run(seconds=1, concurrency=(1, 4), before_python=sys.executable)
    targets = ["upstream", "forwarder", "forwarder httpx2", "hermes-core", "hermes-core before"]
    assert [(r.target, r.connections) for r in results] == [
        (target, connections) for connections in (1, 4) for target in targets
    ]
    for result in results:
        assert result.rps > 0 and result.errors == 0, result
        assert 0 < result.p50_ms <= result.p99_ms, result
        assert (result.cpu_ms is None) == (result.target == "upstream"), result
        if result.cpu_ms is not None:
            assert result.cpu_ms > 0, result
    table = http_load.table(results).splitlines()
    assert len(table) == 2 + len(results)
    assert "4 connections: hermes-core" in http_load.ratios(results)
    assert "x forwarder httpx2" in http_load.ratios(results)
    assert "nproc" in http_load.machine()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make servers)")
def test_http_load_counts_failed_runs(bench: dict[str, ModuleType]) -> None:
    # hermes-core answers a failed run with X-Hermes-Error-Kind; sessions.lua counts those.
    support, http_load = bench["support"], bench["http_load"]
    with (
        support.scripted_process() as upstream,
        support.hermes_process(upstream.url, model="bad-x") as hermes,
    ):
        summary = http_load.wrk(hermes.url, 2, 1, "failing")
    assert summary["requests"] > 0
    assert summary["failed"] == summary["requests"]


def test_http_load_settles_until_a_busy_process_goes_idle(bench: dict[str, ModuleType]) -> None:
    # A process busy for 1.5 s, then asleep: settle() waits out the busy part, and no longer.
    busy = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass\n"
    busy += "time.sleep(30)"
    with subprocess.Popen([sys.executable, "-c", busy]) as process:
        try:
            waited = bench["http_load"].settle([process.pid], interval_s=0.1, limit_s=10)
            assert 1.0 <= waited < 5.0
            assert bench["http_load"].settle([process.pid], interval_s=0.1, limit_s=10) < 0.5
        finally:
            process.kill()


def test_startup_rows_with_plugins_installed(bench: dict[str, ModuleType]) -> None:
    # One contrib plugin (a pip build) plus the two generated ones keeps this quick.
    rows = bench["startup"].rows(runs=1, contrib=("hermes-evict-always",))
    check_rows(rows, 2)
    assert "3 plugins" in rows[0].benchmark


async def test_store_rows(bench: dict[str, ModuleType]) -> None:
    rows = await bench["run"].store_rows(messages=4, per_session=2, rounds=1)
    check_rows(rows[:2], 2)
    check_rows(rows[2:], 1, baseline=False)


def test_table_has_one_line_per_row_and_the_machine(bench: dict[str, ModuleType]) -> None:
    run, support = bench["run"], bench["support"]
    rows = [support.Row("a", 2.5, "ms", 5), support.Row("b", 1500.4, "KiB")]
    lines = run.table(rows).splitlines()
    assert lines[0] == "| benchmark | value | unit | baseline | ratio |"
    assert lines[2:] == ["| a | 2.50 | ms | 5 | 0.50x |", "| b | 1,500 | KiB |  |  |"]
    description = "\n".join(run.machine())
    assert "cores" in description and "Python" in description


def test_markdown_table_right_aligns_the_columns_it_is_told_to(
    bench: dict[str, ModuleType],
) -> None:
    table = bench["support"].markdown_table("name | count", [("a", "1"), ("b", "22")], "lr")
    assert table.splitlines() == ["| name | count |", "|---|--:|", "| a | 1 |", "| b | 22 |"]
    plain = bench["support"].markdown_table("name | count", [])
    assert plain.splitlines() == ["| name | count |", "|---|---|"]


def test_sse_latency_times_every_chunk_on_both_routes(bench: dict[str, ModuleType]) -> None:
    sse_latency = bench["sse_latency"]
    routes = sse_latency.run(runs=1)
    assert [route.name for route in routes] == ["direct", "hermes-core"]
    for route in routes:
        assert len(route.first_ms) == len(route.first_delay_ms) == 1, route
        assert len(route.chunk_delay_ms) == sse_latency.CHUNKS, route
        # The first chunk leaves the upstream 100 ms after the request; delays are positive.
        assert all(first >= 100 for first in route.first_ms), route
        assert all(delay > 0 for delay in route.chunk_delay_ms), route
    assert len(sse_latency.table(routes).splitlines()) == 2 + len(routes)
