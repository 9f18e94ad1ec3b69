"""Throughput under wrk: the upstream alone, a bare forwarder, and hermes-core, interleaved.

wrk (Debian package ``wrk``; ``make servers`` installs it) drives ``POST /v1/chat/completions``
at 1, 50 and 500 concurrent connections, each request in its own ``X-Hermes-Session``
(``bench/sessions.lua``), against, in turn at every concurrency:

- **upstream**: the scripted OpenAI server alone (what the load generator and the upstream
  can do; no gateway);
- **forwarder**: ``bench/forwarder.py``, uvicorn + Starlette + aiohttp passing bodies through
  (the floor for a Python gateway on the same stack);
- **forwarder httpx2**: the same with httpx2 behind (``--client httpx2``, its pool as large),
  the bare forwarder issue 13 measured hermes-core against when it set its targets;
- **hermes-core**: ``hermes-core run`` with the http platform, in-memory store;
- optionally **hermes-core before**: the same, run by another interpreter
  (``--before-python``), e.g. a virtualenv holding the previous release.

Before each measurement every process started here is left to go idle, so a target still
working off requests wrk gave up on never competes with the next one for the CPU. Each row:
requests/s, latency p50/p99, and the gateway's CPU per request (utime + stime from
``/proc/<pid>/stat`` over the measured window). The machine and its load are printed first.

    .venv/bin/python bench/http_load.py [--seconds 8] [--before-python PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from support import Served, hermes_process, listening_process, scripted_process

BENCH = Path(__file__).resolve().parent
CONCURRENCY = (1, 50, 500)
#: Rotating sessions per connection: requests in flight at once never share a session.
SESSIONS_PER_CONNECTION = 20
#: hermes-core keeps every benchmark session's agent, so the cache never churns.
HERMES_SETTINGS = "[cache]\nmax_agents = 20000\n"
TICKS = os.sysconf("SC_CLK_TCK")
#: A process is idle once it uses under this share of a core (see settle()).
IDLE_SHARE = 0.05
#: The longest settle() waits by default for the last measurement's processes to go idle.
SETTLE_LIMIT_S = 30.0
#: The bare forwarders, by the client behind them: aiohttp is the floor on hermes-core's own
#: stack; httpx2 is the forwarder issue 13 set its 0.85x target against.
FORWARDERS = {"forwarder": "aiohttp", "forwarder httpx2": "httpx2"}


@dataclass(frozen=True)
class Result:
    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float | None  # gateway CPU per request; None for the upstream alone or no reply
    errors: int


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(url: str, connections: int, seconds: float, prefix: str) -> dict[str, int]:
    """One wrk run; its summary as printed by sessions.lua."""
    sessions = max(connections * SESSIONS_PER_CONNECTION, 100)
    env = {**os.environ, "BENCH_SESSIONS": str(sessions), "BENCH_PREFIX": prefix}
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"]
    command += ["-s", str(BENCH / "sessions.lua"), f"{url}/v1/chat/completions"]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith('{"requests"'))
    summary: dict[str, int] = json.loads(line)
    return summary


def settle(pids: Sequence[int], interval_s: float = 0.25, limit_s: float = SETTLE_LIMIT_S) -> float:
    """Wait until every process in ``pids`` is idle; the seconds waited.

    A target that fell behind (the httpx2 forwarder at 500 connections) is still working off
    requests wrk gave up on when the next target's measurement starts; without this wait that
    work is measured as the next target's competition for the two cores.
    """
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(interval_s)
        used = max(cpu_seconds(pid) - was for pid, was in zip(pids, before, strict=True))
        if used < IDLE_SHARE * interval_s:
            break
    return time.monotonic() - started


def measure(
    target: str, served: Served, gateway_pid: int | None, connections: int, seconds: float
) -> Result:
    prefix = f"{target.replace(' ', '_')}-{connections}-{time.monotonic_ns()}"
    before = cpu_seconds(gateway_pid) if gateway_pid else 0.0
    summary = wrk(served.url, connections, seconds, prefix)
    used = cpu_seconds(gateway_pid) - before if gateway_pid else None
    requests = summary["requests"]
    return Result(
        target,
        connections,
        requests / (summary["duration_us"] / 1e6),
        summary["p50_us"] / 1000,
        summary["p99_us"] / 1000,
        # No reply in the window: the CPU was spent, but on no request that finished.
        used / requests * 1000 if used is not None and requests else None,
        summary["errors"] + summary["failed"],
    )


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"nproc {os.cpu_count()}, {cpu}; load average (1, 5, 15 min): {load}"


def forwarder_command(upstream: Served, client: str) -> list[str]:
    return [sys.executable, str(BENCH / "forwarder.py"), upstream.url, "--client", client]


@contextlib.contextmanager
def targets(upstream: Served, before_python: str | None) -> Iterator[list[tuple[str, Served]]]:
    """The gateways under test, each started once for the whole run."""
    with contextlib.ExitStack() as stack:
        started = [
            (name, stack.enter_context(listening_process(forwarder_command(upstream, client))))
            for name, client in FORWARDERS.items()
        ]
        hermes = stack.enter_context(hermes_process(upstream.url, extra_settings=HERMES_SETTINGS))
        started.append(("hermes-core", hermes))
        if before_python:
            before = hermes_process(
                upstream.url, python=before_python, extra_settings=HERMES_SETTINGS
            )
            started.append(("hermes-core before", stack.enter_context(before)))
        yield started


def run(seconds: float, concurrency: Sequence[int], before_python: str | None) -> list[Result]:
    """Every target at every concurrency, targets interleaved within each concurrency."""
    results = []
    with scripted_process() as upstream:
        upstream_url = Served(upstream.url.removesuffix("/v1"), upstream.pid)
        with targets(upstream, before_python) as gateways:
            for _, served in gateways:  # warm-up: imports, every pool connection
                wrk(served.url, max(concurrency), 1, "warm-up")
            pids = [upstream.pid, *(served.pid for _, served in gateways)]
            for connections in concurrency:
                settle(pids)
                results.append(measure("upstream", upstream_url, None, connections, seconds))
                for name, served in gateways:
                    settle(pids)
                    results.append(measure(name, served, served.pid, connections, seconds))
    return results


def table(results: Sequence[Result]) -> str:
    lines = [
        "| target | connections | req/s | p50 ms | p99 ms | gateway CPU ms/req | errors |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        cpu = f"{r.cpu_ms:.2f}" if r.cpu_ms is not None else "—"
        if not r.rps:
            cpu = "no reply in the window"
        lines.append(
            f"| {r.target} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {cpu} | {r.errors} |"
        )
    return "\n".join(lines)


def ratios(results: Sequence[Result]) -> str:
    """hermes-core against the forwarder (and against its previous version), per concurrency."""
    by = {(r.target, r.connections): r for r in results}
    lines = []
    for connections in sorted({r.connections for r in results}):
        hermes = by[("hermes-core", connections)]
        against = ", ".join(
            f"{hermes.rps / by[(name, connections)].rps:.2f}x {name}" for name in FORWARDERS
        )
        line = f"{connections} connections: hermes-core {against}"
        before = by.get(("hermes-core before", connections))
        if before is not None and before.rps:
            line += f", {hermes.rps / before.rps:.2f}x before"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--before-python", help="interpreter of a previous hermes-core")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (or make servers)")
    print(machine())
    started = time.perf_counter()
    results = run(args.seconds, CONCURRENCY, args.before_python)
    print(table(results))
    print(ratios(results))
    print(machine().split("; ", 1)[1].replace("load average", "load average at end"))
    print(f"total time: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
