"""What a dead primary costs, with gateway-wide model health on and off.

``--sessions`` conversations of ``--messages`` messages each go through one in-process gateway
whose primary is down and whose fallback (``local:ok-fallback``) answers, for each way of being
down: connection refused (a port nobody listens on), HTTP 500 and HTTP 404 (the scripted OpenAI
server, run as its own process). Sessions start ``--stagger-ms`` apart, as traffic arrives, and
send their messages one after another; the provider keeps its default retries (2, backoff
0.5 s doubling), as a user's would.

For each case it prints the requests the primary got with health on (its breaker at the
defaults: 3 failures, 30 s cooldown) and off, and the probes in the window. Then
``--latency-messages`` messages one at a time, alternately to that health-on gateway (its
breaker still open) and to one whose primary is healthy, after the same load: the ratio of
their median latencies is what a dead model still costs each message. One at a time and in
turn, so that queueing behind 100 busy sessions, or another job on a shared machine, does not
drown it.

    .venv/bin/python bench/model_health.py [--sessions 100] [--messages 10] [--stagger-ms 5]
        [--latency-messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from support import Row, markdown_table, scripted_server

from hermes_core import hookimpl
from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.store import MemoryStore
from hermes_core.testing import message, settings_for

FALLBACK = "ok-fallback"
HEALTHY = "ok-primary"
#: Each way of being down: its name and the primary model (``dead:`` is a closed port).
CASES = (
    ("connection refused", "dead:ok-primary"),
    ("HTTP 500", "local:error500-primary"),
    ("HTTP 404", "local:notfound-primary"),
)


class Counter:
    """A plugin counting the requests sent to one model, and the probes (half-open)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.requests = 0
        self.probes = 0

    @hookimpl
    def on_llm_request(self, model: str) -> None:
        if model == self.model:
            self.requests += 1

    @hookimpl
    def on_health_change(self, state: str) -> None:
        if state == "half_open":
            self.probes += 1


@dataclass(frozen=True)
class Outcome:
    """One gateway's run: requests to the primary, probes, median latency (0: not timed)."""

    primary_requests: int
    probes: int
    median_s: float
    failed_runs: int


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def settings(server_url: str, primary: str, health: bool) -> dict[str, Any]:
    values = settings_for(server_url, HEALTHY, [FALLBACK])
    values["agent"]["model"] = primary
    dead = {"base_url": f"http://127.0.0.1:{closed_port()}/v1"}
    values["providers"] = {"local": {"base_url": server_url}, "dead": dead}
    for table in values["providers"].values():  # default retries; health on or off
        table["breaker"] = {"enabled": health}
    values["store"] = {"path": ":memory:"}
    return values


async def started(server_url: str, primary: str, *, health: bool) -> tuple[Gateway, Counter]:
    """A started gateway for ``primary`` (then the fallback), and its request counter."""
    host = PluginHost()
    host.load(entry_points=False)
    counter = Counter(primary)
    host.register(counter, "bench-counter")
    config = config_from_dict(settings(server_url, primary, health))
    gateway = Gateway(config, host, store=MemoryStore())
    await gateway.start()
    return gateway, counter


async def load(gateway: Gateway, sessions: int, messages: int, stagger_s: float) -> int:
    """The sessions' conversations, started ``stagger_s`` apart; the number of failed runs."""
    failed = 0

    async def conversation(index: int) -> None:
        nonlocal failed
        await asyncio.sleep(index * stagger_s)
        for turn in range(messages):
            reply = await gateway.handle(message(f"message {turn}", f"bench:{index}"))
            failed += reply.failed

    await asyncio.gather(*(conversation(index) for index in range(sessions)))
    return failed


async def timed(gateway: Gateway, turn: int) -> float:
    started_at = time.perf_counter()
    reply = await gateway.handle(message(f"timed {turn}", f"bench:{turn % 10}"))
    if reply.failed:
        raise RuntimeError(f"a timed message failed: {reply.text}")
    return time.perf_counter() - started_at


async def measure_case(
    server_url: str,
    primary: str,
    *,
    sessions: int,
    messages: int,
    stagger_s: float,
    latency_messages: int,
) -> tuple[Outcome, Outcome, Outcome]:
    """Health on, health off, and a healthy primary, each under the same load; then messages
    one at a time to the healthy gateway and the health-on one in turn (so both see the same
    machine), the dead primary's breaker still open."""
    runs = [
        await started(server_url, primary, health=True),
        await started(server_url, primary, health=False),
        await started(server_url, f"local:{HEALTHY}", health=True),
    ]
    try:
        # Health off first: its retry waits take long, and the others' cooldown must not run
        # out before their messages are timed.
        off_failed = await load(runs[1][0], sessions, messages, stagger_s)
        on_failed = await load(runs[0][0], sessions, messages, stagger_s)
        failed = [on_failed, off_failed, await load(runs[2][0], sessions, messages, stagger_s)]
        (down, _), _, (healthy, _) = runs
        latencies: tuple[list[float], list[float]] = ([], [])
        for turn in range(latency_messages):
            latencies[0].append(await timed(down, turn))
            latencies[1].append(await timed(healthy, turn))
    finally:
        for gateway, _ in runs:
            await gateway.stop()
    medians = [statistics.median(latencies[0]), 0.0, statistics.median(latencies[1])]
    on, off, ok = (
        Outcome(counter.requests, counter.probes, median, fails)
        for (_, counter), median, fails in zip(runs, medians, failed, strict=True)
    )
    return on, off, ok


async def measure_all(
    server_url: str, *, sessions: int, messages: int, stagger_s: float, latency_messages: int
) -> list[tuple[str, Outcome, Outcome, Outcome]]:
    """For each case: health on, health off, and the healthy primary measured alongside."""
    load_args: dict[str, Any] = {
        "sessions": sessions,
        "messages": messages,
        "stagger_s": stagger_s,
        "latency_messages": latency_messages,
    }
    # A warm-up first: the first gateway of the process pays for imports and first connections.
    await measure_case(server_url, f"local:{HEALTHY}", **{**load_args, "sessions": 2})
    return [
        (name, *await measure_case(server_url, primary, **load_args)) for name, primary in CASES
    ]


def rows(results: Sequence[tuple[str, Outcome, Outcome, Outcome]]) -> list[Row]:
    """Two rows per case: primary requests (on vs off), median latency (vs healthy)."""
    found: list[Row] = []
    for name, on, off, healthy in results:
        found.append(
            Row(
                f"primary requests, {name} (health on vs off)",
                on.primary_requests,
                "requests",
                off.primary_requests,
            )
        )
        found.append(
            Row(
                f"median latency, {name} (vs healthy primary)",
                on.median_s * 1000,
                "ms",
                healthy.median_s * 1000,
            )
        )
    return found


def table(
    results: Sequence[tuple[str, Outcome, Outcome, Outcome]], sessions: int, messages: int
) -> str:
    header = (
        "primary down | primary requests, health on | probes | health off "
        "| median ms, health on | healthy primary | ratio | failed runs (on / off)"
    )
    rows = [
        (
            name,
            str(on.primary_requests),
            str(on.probes),
            str(off.primary_requests),
            f"{on.median_s * 1000:.2f}",
            f"{healthy.median_s * 1000:.2f}",
            f"{on.median_s / healthy.median_s:.2f}x",
            f"{on.failed_runs} / {off.failed_runs}",
        )
        for name, on, off, healthy in results
    ]
    intro = f"{sessions} sessions x {messages} messages, primary down, fallback answers:"
    return f"{intro}\n\n{markdown_table(header, rows)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--stagger-ms", type=float, default=5.0)
    parser.add_argument("--latency-messages", type=int, default=200)
    args = parser.parse_args()
    with scripted_server() as url:
        results = asyncio.run(
            measure_all(
                url,
                sessions=args.sessions,
                messages=args.messages,
                stagger_s=args.stagger_ms / 1000,
                latency_messages=args.latency_messages,
            )
        )
    print(table(results, args.sessions, args.messages))


if __name__ == "__main__":
    main()
