"""The gateway-wide MCP pool: one connection per enabled server, shared by every agent.

Agents never own MCP connections, so evicting or recreating an agent cannot start a server.
The pool is a :class:`hermes_core.tools.ToolSource`: before each LLM call the registry asks it
for the tools to offer, which starts the servers the first time (unless ``mcp.eager`` already
did at gateway start). Once :meth:`MCPPool.open`, it records its stdio servers' process groups
in the state directory, so a gateway killed with SIGKILL has its leftovers killed by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loguru import logger

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.client_callbacks import ClientServices
from hermes_core.mcp.connection import ServerConnection, ServerState
from hermes_core.mcp.ledger import ProcessLedger
from hermes_core.mcp.naming import offered_name
from hermes_core.mcp.resources import resource_tool
from hermes_core.mcp.results import RESOURCE_TOOL
from hermes_core.mcp.settings import PoolSettings
from hermes_core.tools import Tool

#: Extra seconds the first wait for servers allows beyond their ``startup_timeout_s``: a
#: failed start settles only once the SDK has killed the process, which takes it up to 4 s
#: for a hung one (stdin closed, 2 s, SIGTERM, 2 s, SIGKILL), plus the spawn on a busy host.
SETTLE_GRACE_S = 15.0
#: The run loop's own deadline on an MCP call, beyond ``timeout_s``: a backstop only, the
#: SDK's per-request timeout answers first (and tells the server to cancel).
CALL_GRACE_S = 5.0
#: Servers whose tools are not offered at all.
GONE = (ServerState.FAILED, ServerState.STOPPED)
UNAVAILABLE_PREFIX = "[unavailable: the server is restarting] "


def import_sdk() -> None:
    """Import the MCP client SDK (about a second, far more on a busy host) now, not inside
    a timed wait or probe.

    Call it before the clock of a wait for servers starts, and before running probes
    concurrently with other work: the import blocks the event loop, and would otherwise be
    counted in whatever else is being timed.
    """
    import mcp.client.session
    import mcp.client.stdio
    import mcp.client.streamable_http  # noqa: F401


class MCPPool:
    """Every MCP server's connection for one gateway; a ``ToolSource`` for the registry.

    :ivar specs: every known server, enabled or not, by name.
    :ivar connections: one :class:`ServerConnection` per enabled server.
    :ivar collisions: one line per tool left out because another had its offered name.
    :ivar ledger: the process groups of its stdio servers that are running.
    """

    def __init__(self) -> None:
        self.settings = PoolSettings()
        self.ledger = ProcessLedger()
        #: What the gateway lends its servers (models for sampling, platforms that can ask).
        self.services = ClientServices()
        self.specs: dict[str, MCPServerSpec] = {}
        self.connections: dict[str, ServerConnection] = {}
        self.collisions: list[str] = []
        self._started = False
        self._stopped = False

    def __repr__(self) -> str:
        return f"<MCPPool servers={sorted(self.connections)}>"

    def configure(self, specs: Mapping[str, MCPServerSpec], settings: PoolSettings) -> None:
        """Set the servers (after every plugin registered its own) and the pool settings."""
        if self._started:
            raise RuntimeError("the MCP pool is already started")
        self.settings = settings
        self.specs = dict(sorted(specs.items()))
        self.connections = {
            name: ServerConnection(spec, settings, self.ledger, self.services)
            for name, spec in self.specs.items()
            if spec.enabled
        }

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self, state_dir: Path) -> None:
        """Kill what a dead gateway left in ``state_dir``, then record there (before start)."""
        await self.ledger.open(state_dir)

    def start(self) -> None:
        """Start every enabled server's supervisor; returns at once (idempotent)."""
        if self._started or self._stopped:
            return
        self._started = True
        for connection in self.connections.values():
            connection.start()

    async def wait_settled(self, timeout_s: float | None = None) -> None:
        """Wait until every server's first attempt has ended (ready, backing off or failed).

        Only the first attempt is ever waited for: a server restarting later never delays a
        run. ``timeout_s`` defaults to the longest ``startup_timeout_s`` plus a grace period.
        """
        pending = [c for c in self.connections.values() if not c.settled.is_set()]
        if not pending:
            return
        import_sdk()  # before the clock: the first attempts would import it inside their budget
        if timeout_s is None:
            timeout_s = max(c.spec.startup_timeout_s for c in pending) + SETTLE_GRACE_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_all_set([c.settled for c in pending]), timeout_s)

    async def stop(self) -> None:
        """Stop every server (process groups terminated, then killed) and await every task."""
        self._stopped = True
        await asyncio.gather(*(c.stop() for c in self.connections.values()))
        self.ledger.close()

    # --- tools ---------------------------------------------------------------------------

    async def tools(self) -> list[Tool]:
        """The MCP tools to offer now, starting the servers on first use.

        Ready servers' tools are offered as they are; a server that is restarting keeps its
        last-known tools, marked unavailable, and a call answers at once that it is down.
        """
        listed = [c for c in (await self.started()).values() if c.state not in GONE]
        if not listed:  # no server: no gather of nothing on every LLM round
            return []
        listings = await asyncio.gather(*(c.current_tools() for c in listed))
        offered: dict[str, tuple[str, str]] = {}
        tools: list[Tool] = []
        for connection, listing in zip(listed, listings, strict=True):
            ready = connection.state is ServerState.READY
            timeout_s = connection.spec.timeout_s + CALL_GRACE_S
            candidates = [
                Tool(
                    name=offered_name(connection.name, mcp_tool.name),
                    description=mcp_tool.description or mcp_tool.title or "",
                    parameters=mcp_tool.input_schema,
                    handler=functools.partial(connection.call, mcp_tool.name),
                    source=f"mcp server {connection.name}",
                    timeout_s=timeout_s,
                )
                for mcp_tool in listing
            ]
            # After the server's own: a server tool of the same name keeps it.
            if (reader := resource_tool(connection, timeout_s)) is not None:
                candidates.append(reader)
            names = [mcp_tool.name for mcp_tool in listing] + [RESOURCE_TOOL]
            for tool, server_name in zip(candidates, names, strict=False):
                if (owner := offered.get(tool.name)) is not None:
                    self._collision(tool.name, owner, (connection.name, server_name))
                    continue
                offered[tool.name] = (connection.name, server_name)
                if not ready:
                    tool = dataclasses.replace(
                        tool, description=UNAVAILABLE_PREFIX + tool.description
                    )
                tools.append(tool)
        return tools

    async def started(self) -> dict[str, ServerConnection]:
        """The connections, every server started and its first attempt awaited (none once
        the pool has stopped)."""
        if self._stopped or not self.connections:
            return {}
        self.start()
        await self.wait_settled()
        return self.connections

    def _collision(self, name: str, owner: tuple[str, str], other: tuple[str, str]) -> None:
        line = (
            f"tool {other[1]!r} of MCP server {other[0]!r} is not offered: its name {name!r} "
            f"is taken by tool {owner[1]!r} of MCP server {owner[0]!r}"
        )
        if line not in self.collisions:
            self.collisions.append(line)
            logger.warning("{}", line)

    def status(self) -> list[dict[str, Any]]:
        """Every known server (disabled ones too) as JSON-ready dicts, by name."""
        rows: list[dict[str, Any]] = []
        for name, spec in self.specs.items():
            connection = self.connections.get(name)
            if connection is None:
                rows.append(
                    {
                        "name": name,
                        "source": spec.source,
                        "transport": spec.transport,
                        "state": "disabled",
                        "tools": [],
                        "starts": 0,
                        "restarts": 0,
                        "last_error": None,
                    }
                )
            else:
                rows.append(connection.status())
        return rows


async def _all_set(events: list[asyncio.Event]) -> None:
    for event in events:
        await event.wait()
