"""Streaming latency over raw SSE: how soon each chunk the upstream streams reaches a client,
directly and through hermes-core, side by side in one run.

The upstream is the scripted OpenAI server's ``stream-10-100-*`` model: 10 content chunks,
100 ms apart. In front of it sits ``bench/sse_tap.py``, a relay that notes when each content
chunk left the upstream side. Requests alternate, one at a time, between

- **direct**: client -> tap -> upstream;
- **hermes-core**: client -> ``hermes-core run`` (http platform, ``stream: true``) -> tap ->
  upstream.

The client is a plain blocking socket (parsed with ``h11``) noting ``time.monotonic_ns()``
when each content chunk arrives. Per path: the first content from the request being sent
(what a user waits), and each chunk's delay after it left the upstream (the first one's, and
every one's). The machine and its load are printed first.

    .venv/bin/python bench/sse_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import h11
from http_load import machine
from sse_tap import EVENT_END, carries_content
from support import (
    hermes_process,
    listening_process,
    markdown_table,
    percentile,
    scripted_process,
)

BENCH = Path(__file__).resolve().parent
MODEL = "stream-10-100-bench"
CHUNKS = 10
TIMEOUT_S = 30.0


@dataclass
class Route:
    """One way to the upstream and what was measured on it."""

    name: str
    url: str
    first_ms: list[float] = field(default_factory=list)  # first content after the request
    first_delay_ms: list[float] = field(default_factory=list)  # first chunk after the upstream's
    chunk_delay_ms: list[float] = field(default_factory=list)  # every chunk after the upstream's


def stream_once(url: str) -> tuple[int, list[int]]:
    """POST a streamed chat request; when it was sent and when each content chunk arrived."""
    target = urlsplit(url)
    body = json.dumps(
        {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    ).encode()
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target="/v1/chat/completions",
        headers=[
            ("Host", target.netloc),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    arrived: list[int] = []
    with socket.create_connection((target.hostname, target.port), TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = time.monotonic_ns()
        sock.sendall(connection.send(request) + connection.send(h11.Data(data=body)))
        sock.sendall(connection.send(h11.EndOfMessage()))
        buffer = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(sock.recv(65536))
                continue
            now = time.monotonic_ns()
            if isinstance(event, h11.Response) and event.status_code != 200:
                raise RuntimeError(f"{url} answered {event.status_code}")
            if isinstance(event, h11.Data):
                buffer += bytes(event.data)
                *events, buffer = buffer.split(EVENT_END)
                arrived.extend(now for chunk in events if carries_content(chunk))
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return sent, arrived


def tap_times(log: Path, seen: int) -> list[int]:
    """The content times of the tap's connection number ``seen`` (0-based), once logged."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) > seen:
            times: list[int] = json.loads(lines[seen])["content_ns"]
            return times
        time.sleep(0.005)
    raise RuntimeError("the tap logged no connection")


def measure(urls: Sequence[tuple[str, str]], runs: int, log: Path) -> list[Route]:
    """``runs`` requests on each route, alternating."""
    measured = [Route(name, url) for name, url in urls]
    connections = len(log.read_text().splitlines()) if log.exists() else 0
    for _ in range(runs):
        for path in measured:
            sent, arrived = stream_once(path.url)
            upstream = tap_times(log, connections)
            connections += 1
            if len(arrived) != CHUNKS or len(upstream) != CHUNKS:
                raise RuntimeError(
                    f"{path.name}: {len(arrived)} chunks, the upstream sent {CHUNKS}"
                )
            delays = [(a - u) / 1e6 for a, u in zip(arrived, upstream, strict=True)]
            path.first_ms.append((arrived[0] - sent) / 1e6)
            path.first_delay_ms.append(delays[0])
            path.chunk_delay_ms.extend(delays)
    return measured


@contextlib.contextmanager
def routes() -> Iterator[tuple[list[tuple[str, str]], Path]]:
    """The upstream, its tap, and hermes-core in front of the tap: each route's name and
    URL, and the tap's log."""
    with (
        tempfile.TemporaryDirectory(prefix="hermes-sse-") as work,
        scripted_process() as upstream,
    ):
        log = Path(work) / "tap.jsonl"
        host_port = urlsplit(upstream.url).netloc
        tap_command = [sys.executable, str(BENCH / "sse_tap.py"), host_port, str(log)]
        with (
            listening_process(tap_command) as tap,
            hermes_process(f"{tap.url}/v1", model=MODEL) as hermes,
        ):
            yield [("direct", tap.url), ("hermes-core", hermes.url)], log


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def table(measured: Sequence[Route]) -> str:
    header = (
        "path | runs | first content after the request, median ms "
        "| first chunk after the upstream's, median / p95 ms "
        "| each chunk after the upstream's, median / p95 / max ms"
    )
    rows = []
    for p in measured:
        first, each = p.first_delay_ms, p.chunk_delay_ms
        rows.append(
            (
                p.name,
                str(len(p.first_ms)),
                f"{median(p.first_ms):.1f}",
                f"{median(first):.2f} / {percentile(first, 95):.2f}",
                f"{median(each):.2f} / {percentile(each, 95):.2f} / {max(each):.2f}",
            )
        )
    return markdown_table(header, rows, "lrrrr")


def run(runs: int) -> list[Route]:
    with routes() as (urls, log):
        measure(urls, 1, log)  # warm-up: imports, the first connections
        return measure(urls, runs, log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="requests per path")
    args = parser.parse_args()
    print(machine())
    print(table(run(args.runs)))
    print(machine().split("; ", 1)[1].replace("load average", "load average at end"))


if __name__ == "__main__":
    main()
