"""Resident memory per cached idle agent: 1,000 sessions, one message each, in one process.

A fresh process (so nothing earlier inflates or hides the growth) starts a gateway with
``cache.max_agents`` above the session count and no idle expiry, warms it up with a few
messages, reads ``VmRSS``, sends one message to each of ``--agents`` new sessions one after
another, and reads ``VmRSS`` again. The growth divided by the agent count is what a cached idle
agent costs, together with its session and its two transcript messages in the in-memory
store. The scripted OpenAI server runs in another process, so its memory is not counted.

    .venv/bin/python bench/agent_memory.py [--agents 1000]
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from support import MODEL, START_TIMEOUT_S, Row, fresh_process_main, json_of_fresh_process

from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.store import MemoryStore
from hermes_core.testing import message, settings_for

WARM_UP_MESSAGES = 20


def rss_kib() -> int:
    """This process's resident set size, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def measure(server_url: str, agents: int) -> dict[str, int]:
    """RSS before and after caching ``agents`` idle agents, and how many stayed cached."""
    host = PluginHost()
    host.load(entry_points=False)
    settings = settings_for(
        server_url, MODEL, cache={"max_agents": agents + WARM_UP_MESSAGES, "idle_ttl_s": 0}
    )
    async with Gateway(config_from_dict(settings), host, store=MemoryStore()) as gateway:

        async def send(key: str) -> None:
            reply = await gateway.handle(message("hello", key))
            if reply.result is None or reply.result["failed"]:
                raise RuntimeError(f"run failed: {reply.text}")

        # Lazy imports, connection pools and first-use caches are not per-agent costs.
        for number in range(WARM_UP_MESSAGES):
            await send(f"warm-up:{number}")
        gc.collect()
        before = rss_kib()
        for number in range(agents):
            await send(f"bench:{number}")
        gc.collect()
        after = rss_kib()
        cached = len(gateway.cache) - WARM_UP_MESSAGES
    return {"agents": agents, "cached": cached, "rss_before_kib": before, "rss_after_kib": after}


async def rows(server_url: str, agents: int = 1000) -> list[Row]:
    """Run :func:`measure` in a fresh interpreter and turn its numbers into rows."""
    arguments = ["--url", server_url, "--agents", str(agents)]
    numbers = await json_of_fresh_process(__file__, arguments, START_TIMEOUT_S * 5)
    if numbers["cached"] != agents:
        raise RuntimeError(f"only {numbers['cached']} of {agents} agents stayed cached")
    growth = numbers["rss_after_kib"] - numbers["rss_before_kib"]
    return [
        Row(f"RSS per cached idle agent ({agents:,} agents)", growth / agents, "KiB"),
        Row(f"RSS of the process with {agents:,} agents", numbers["rss_after_kib"] / 1024, "MiB"),
    ]


async def main() -> None:
    result = await fresh_process_main(__doc__, {"agents": 1000}, measure, rows)
    for row in result:
        print(f"{row.benchmark:<40}{row.value:9.1f} {row.unit}")


if __name__ == "__main__":
    asyncio.run(main())
