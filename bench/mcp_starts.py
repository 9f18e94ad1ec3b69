"""How many MCP server processes do 100 failing messages start?

The scenario is the one hermes-core exists for: a session whose primary and fallback models
both fail (``bad-*``: HTTP 400) with one stdio MCP server configured, 100 messages in a row.
In the design hermes-core replaced, every new agent spawned its own MCP servers, so a policy
that rebuilds the agent after every run spawned one process per message. hermes-core's servers
belong to a gateway-wide pool, so the count is 1 whatever the policy does to agents.

For each policy this prints the agents created, the MCP processes actually started (each start
appends its PID to a file) and what a per-agent-spawn design would have started (one per agent
created). Run: ``.venv/bin/python bench/mcp_starts.py [--messages N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hermes_core import hookimpl
from hermes_core.cache import AgentCache
from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.testing import FakeOpenAI, send, settings_for
from hermes_core.types import Session

TOOLBOX = Path(__file__).resolve().parents[1] / "tests" / "mcp_servers" / "toolbox.py"


class EvictAlways:
    """The naive policy (as contrib/hermes-evict-always): evict the agent after every run."""

    @hookimpl
    def post_run(self, session: Session, cache: AgentCache) -> None:
        cache.evict(session.key, "evict_always")


class AgentCounter:
    """Counts the distinct agents that ran (``post_run`` gets ``None`` for a short-circuit)."""

    def __init__(self) -> None:
        self.agents: set[str] = set()

    @hookimpl
    def post_run(self, agent: Any) -> None:
        if agent is not None:
            self.agents.add(agent.id)


#: name, plugins disabled, breaker threshold, evict-always plugin registered
POLICIES: list[tuple[str, list[str], int, bool]] = [
    ("defaults (eviction, circuit_breaker at 3)", [], 3, False),
    ("defaults, circuit_breaker off", ["circuit_breaker"], 3, False),
    ("evict-always, circuit_breaker at 3", ["eviction"], 3, True),
    ("evict-always, circuit_breaker off", ["eviction", "circuit_breaker"], 3, True),
]


async def measure(
    url: str, messages: int, disabled: list[str], threshold: int, evict_always: bool, work: Path
) -> tuple[int, int, float]:
    """Agents created, MCP processes started and seconds taken for one policy."""
    pid_file = work / f"pids-{time.monotonic_ns()}"
    server = {
        "command": sys.executable,
        "args": [str(TOOLBOX)],
        "env": {"TOOLBOX_PID_FILE": str(pid_file)},
    }
    settings = settings_for(
        url,
        "bad-primary",
        ["bad-fallback"],
        mcp={"servers": {"toolbox": server}},
        circuit_breaker={"threshold": threshold},
        plugins={"disabled": disabled},
        store={"path": ":memory:"},  # no session state carried between policies
    )
    host = PluginHost()
    host.load(disabled, entry_points=False)
    counter = AgentCounter()
    host.register(counter, "bench-agent-counter")
    if evict_always:
        host.register(EvictAlways(), "evict_always")
    gateway = Gateway(config_from_dict(settings), host)
    started = time.perf_counter()
    await gateway.start()
    try:
        for index in range(messages):
            reply = await send(gateway, f"message {index}", session_key="bench:1")
            assert reply.result is not None and reply.result["failed"], reply
    finally:
        await gateway.stop()
    starts = len(pid_file.read_text().split()) if pid_file.exists() else 0
    return len(counter.agents), starts, time.perf_counter() - started


async def main(messages: int) -> None:
    print(f"{messages} failing messages (primary and fallback bad-*), one stdio MCP server\n")
    header = ("policy", "agents created", "MCP starts", "per-agent-spawn starts")
    print(f"{header[0]:<44}{header[1]:>16}{header[2]:>12}{header[3]:>24}")
    with FakeOpenAI() as fake, tempfile.TemporaryDirectory() as work:
        for name, disabled, threshold, evict in POLICIES:
            agents, starts, seconds = await measure(
                fake.url, messages, disabled, threshold, evict, Path(work)
            )
            print(f"{name:<44}{agents:>16}{starts:>12}{agents:>24}   ({seconds:.1f}s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100)
    asyncio.run(main(parser.parse_args().messages))
