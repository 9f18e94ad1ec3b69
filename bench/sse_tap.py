"""A timing tap: a TCP relay in front of an upstream that notes when each SSE content chunk
passed through it, for ``bench/sse_latency.py``.

Bytes go through unchanged, both ways. For each connection it finds the server-sent events the
upstream answers with and, once the connection closes, appends one JSON line to LOG:
``{"content_ns": [...]}``, the ``time.monotonic_ns()`` at which each event carrying non-empty
``choices[0].delta.content`` was handed on. ``CLOCK_MONOTONIC`` is one clock for every process
of the machine, so the benchmark compares these times with its own.

    .venv/bin/python bench/sse_tap.py UPSTREAM_HOST:PORT LOG   # prints "listening on <url>"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

EVENT_END = b"\n\n"


def carries_content(event: bytes) -> bool:
    """Whether one SSE event is a chunk with non-empty content."""
    data = event.strip().removeprefix(b"data: ")
    if not data.startswith(b"{"):
        return False
    choices = json.loads(data).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def pipe_noting_content(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, times: list[int]
) -> None:
    buffer = b""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            now = time.monotonic_ns()
            buffer += data
            *events, buffer = buffer.split(EVENT_END)
            times.extend(now for event in events if carries_content(event))
            writer.write(data)
            await writer.drain()
    writer.close()


async def serve(upstream: str, log: Path) -> None:
    host, port = upstream.rsplit(":", 1)

    async def relay(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        times: list[int] = []
        requests = asyncio.create_task(pipe(client_reader, upstream_writer))
        try:
            await pipe_noting_content(upstream_reader, client, times)
        finally:  # the answer is over (the upstream closes a stream): so is the request side
            requests.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await requests
            upstream_writer.close()
        with log.open("a") as out:
            out.write(json.dumps({"content_ns": times}) + "\n")

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", help="host:port of the upstream")
    parser.add_argument("log", type=Path, help="file to append one JSON line per connection to")
    args = parser.parse_args()
    asyncio.run(serve(args.upstream, args.log))


if __name__ == "__main__":
    main()
