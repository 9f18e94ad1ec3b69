"""Run every hermes-core benchmark and print one table, with the machine it ran on.

Each row is ``benchmark | value | unit | baseline | ratio`` (ratio = value / baseline); the
baselines are explained under the table. All traffic stays on 127.0.0.1: the scripted OpenAI
server, ``hermes-core run`` processes and MCP servers are local processes this script starts
and stops. Every count is fixed, so the run is bounded; on a 2-core machine it takes a few
minutes. Progress goes to stderr, the table (Markdown) to stdout.

    .venv/bin/python bench/run.py        # or: make bench
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import agent_memory
import mcp_starts
import overhead
import startup
import store_overhead
import throughput
from support import Row, markdown_table, scripted_server

from hermes_core.testing import FakeOpenAI

#: name, plugins disabled, breaker threshold, evict-always registered (as in mcp_starts.py)
Policy = tuple[str, list[str], int, bool]

#: What each baseline is, printed under the table.
NOTES = """\
Baselines:
- MCP starts: the processes a design that spawns MCP servers per agent would have started for
  the same run (one per agent created). The policy is the built-in defaults, or the
  evict-always plugin replacing `eviction` (the original bug, with `circuit_breaker` off).
- latency: the same conversations sent by a bare `openai` SDK client
  (`chat.completions.create`) straight to the scripted server, the whole history in each
  request, conversations alternating with hermes-core's. "SDK raw post" sends them through the
  client's generic `post`, the call hermes-core's provider makes (no request validation).
- throughput: the same load (sessions, messages, connection limit) straight to the scripted
  server.
- start-up: the same command without any third-party plugin installed.
- store: the same messages through the gateway with the in-memory store."""


def machine() -> list[str]:
    """What the numbers were measured on."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram_kib = int(line.split()[1])
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; RAM: {ram_kib / 1024**2:.1f} GiB",
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"Linux {platform.release()}; hermes-core {version('hermes-core')}, "
        f"openai {version('openai')}",
        f"load average at start (1, 5, 15 min): {load}",
    ]


async def mcp_start_rows(
    server_url: str, messages: int = 100, policies: Sequence[Policy] = mcp_starts.POLICIES
) -> list[Row]:
    """``bench/mcp_starts.py``'s policies: MCP processes started against per-agent spawn."""
    result = []
    with tempfile.TemporaryDirectory(prefix="hermes-bench-") as work:
        for name, disabled, threshold, evict_always in policies:
            agents, starts, _ = await mcp_starts.measure(
                server_url, messages, disabled, threshold, evict_always, Path(work)
            )
            result.append(
                Row(f"MCP starts, {messages} failing msgs: {name}", starts, "processes", agents)
            )
    return result


async def store_rows(messages: int = 200, per_session: int = 5, rounds: int = 3) -> list[Row]:
    """``bench/store_overhead.py``: SQLite against the in-memory store, per message."""
    sessions = max(messages // per_session, 1)
    result = []
    with FakeOpenAI() as server:
        for concurrent, label in ((False, "one message at a time"), (True, f"{sessions} at once")):
            per_message = await store_overhead.compare(
                server, sessions, per_session, concurrent, rounds
            )
            result.append(
                Row(
                    f"SQLite store vs memory, {label}",
                    per_message["sqlite"] * 1000,
                    "ms/msg",
                    per_message["memory"] * 1000,
                )
            )
    with tempfile.TemporaryDirectory(prefix="hermes-bench-") as directory:
        seconds = await store_overhead.store_calls_alone(Path(directory), messages)
    result.append(Row("SQLite store calls alone", seconds / messages * 1000, "ms/msg"))
    return result


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    cells = [
        (
            row.benchmark,
            _number(row.value),
            row.unit,
            _number(row.baseline),
            f"{row.ratio:.2f}x" if row.ratio is not None else "",
        )
        for row in rows
    ]
    return markdown_table("benchmark | value | unit | baseline | ratio", cells, "lrlrr")


async def main() -> None:
    description = machine()
    started = time.perf_counter()
    rows: list[Row] = []

    async def step(name: str, benchmark: Callable[[], Awaitable[list[Row]]]) -> None:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        begun = time.perf_counter()
        rows.extend(await benchmark())
        print(f"  {name}: {time.perf_counter() - begun:.0f}s", file=sys.stderr, flush=True)

    with scripted_server() as url:
        await step("MCP starts", lambda: mcp_start_rows(url))
        await step("latency over HTTP", lambda: overhead.http_rows(url))
        await step("latency in process", lambda: overhead.gateway_rows(url))
        await step("throughput", lambda: throughput.rows(url))
        await step("RSS per agent", lambda: agent_memory.rows(url))
    await step("start-up", lambda: asyncio.to_thread(startup.rows))
    await step("store overhead", store_rows)

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print("\n".join([*description, f"load average at end: {load}"]) + "\n")
    print(table(rows) + "\n")
    print(NOTES + "\n")
    print(f"total time: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    asyncio.run(main())
