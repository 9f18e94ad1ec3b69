"""Resident memory against distinct sessions: RSS after 1,000 and after 30,000 sessions.

Every new session name (an HTTP client's ``X-Hermes-Session`` or ``user``, an IRC nick) is a
session of its own, so a gateway's memory must be bounded
by its settings (``cache.max_sessions``, ``cache.max_agents``), not by how many sessions have
ever written. A fresh process (so nothing earlier inflates or hides the growth) starts a
gateway with the default settings and a SQLite store in a temporary directory, sends one
message to each of ``--sessions`` new sessions (``--concurrency`` at a time), and reads
``VmRSS`` after the first 1,000 and at the end. The scripted OpenAI server runs in another
process, so its memory is not counted.

    .venv/bin/python bench/session_memory.py [--sessions 30000]
"""

from __future__ import annotations

import asyncio
import gc
import tempfile

from agent_memory import rss_kib
from support import MODEL, START_TIMEOUT_S, Row, fresh_process_main, json_of_fresh_process

from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.testing import message, settings_for

FIRST = 1000


async def measure(server_url: str, sessions: int, concurrency: int) -> dict[str, int]:
    """RSS after the first :data:`FIRST` sessions and after ``sessions``, and the sessions and
    agents the gateway still holds at the end."""
    host = PluginHost()
    host.load(entry_points=False)
    with tempfile.TemporaryDirectory() as directory:
        settings = settings_for(server_url, MODEL, store={"path": f"{directory}/sessions.db"})
        async with Gateway(config_from_dict(settings), host) as gateway:

            async def send(number: int) -> None:
                reply = await gateway.handle(message("hello", f"anon-{number}"))
                if reply.result is None or reply.result["failed"]:
                    raise RuntimeError(f"run failed: {reply.text}")

            async def send_range(start: int, stop: int) -> None:
                for batch in range(start, stop, concurrency):
                    await asyncio.gather(*map(send, range(batch, min(batch + concurrency, stop))))

            await send_range(0, FIRST)
            gc.collect()
            first = rss_kib()
            await send_range(FIRST, sessions)
            gc.collect()
            last = rss_kib()
            return {
                "sessions": sessions,
                "rss_first_kib": first,
                "rss_last_kib": last,
                "loaded_sessions": len(gateway.sessions),
                "cached_agents": len(gateway.cache),
            }


async def rows(server_url: str, sessions: int = 30_000, concurrency: int = 50) -> list[Row]:
    """Run :func:`measure` in a fresh interpreter and turn its numbers into rows."""
    arguments = [
        "--url",
        server_url,
        "--sessions",
        str(sessions),
        "--concurrency",
        str(concurrency),
    ]
    numbers = await json_of_fresh_process(__file__, arguments, START_TIMEOUT_S * 60)
    first, last = numbers["rss_first_kib"] / 1024, numbers["rss_last_kib"] / 1024
    return [
        Row(f"RSS after {FIRST:,} distinct sessions", first, "MiB"),
        Row(f"RSS after {sessions:,} distinct sessions", last, "MiB", baseline=first),
        Row(f"sessions loaded after {sessions:,}", numbers["loaded_sessions"], "sessions"),
    ]


async def main() -> None:
    result = await fresh_process_main(
        __doc__, {"sessions": 30_000, "concurrency": 50}, measure, rows
    )
    for row in result:
        ratio = f"  ({row.value - row.baseline:+.1f} MiB)" if row.baseline else ""
        print(f"{row.benchmark:<40}{row.value:9.1f} {row.unit}{ratio}")


if __name__ == "__main__":
    asyncio.run(main())
