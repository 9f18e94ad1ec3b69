"""Start one MCP server, wait for its first connection attempt, record the outcome, stop it.

``hermes-core mcp test`` and ``hermes-core doctor`` both use :func:`probe_server`, so the two
commands judge a server the same way the gateway's pool does: through a real
:class:`~hermes_core.mcp.connection.ServerConnection`, stopped (process group and all) before
the function returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.client_callbacks import ClientServices
from hermes_core.mcp.connection import ServerConnection, ServerState
from hermes_core.mcp.pool import SETTLE_GRACE_S, import_sdk
from hermes_core.mcp.sampling import GatewayModels
from hermes_core.mcp.settings import PoolSettings
from hermes_core.providers import ProviderRegistry
from hermes_core.redaction import redact_text

if TYPE_CHECKING:
    from mcp_types import ClientCapabilities, InitializeResult
    from mcp_types import Tool as MCPTool


@dataclass(frozen=True)
class ProbeResult:
    """What one start of a server showed.

    :ivar state: the connection's state when its first attempt ended (``READY`` on success).
    :ivar error: the one-line reason when it is not ready (``None`` when it is), redacted.
    :ivar tools: the tools it offers (allowlist applied).
    :ivar not_offered: tools the server lists that are not offered, with why.
    :ivar initialized: the server's ``initialize`` answer (info, capabilities), when ready.
    :ivar declared: the client capabilities declared to it.
    :ivar timings: seconds taken by ``connect``, ``initialize`` and ``list_tools``.
    :ivar ready_s: seconds from start until the first attempt ended.
    :ivar stop_s: seconds the stop took.
    """

    spec: MCPServerSpec
    state: ServerState
    error: str | None
    tools: list[MCPTool]
    not_offered: dict[str, str]
    initialized: InitializeResult | None
    declared: ClientCapabilities
    timings: dict[str, float]
    ready_s: float
    stop_s: float

    @property
    def ok(self) -> bool:
        """Whether the server started and listed its tools."""
        return self.state is ServerState.READY


async def probe_server(spec: MCPServerSpec, settings: PoolSettings) -> ProbeResult:
    """Start ``spec``'s server, wait for the first attempt (bounded by its
    ``startup_timeout_s``), then stop it. Never raises for a server that cannot start."""
    import_sdk()  # before the clock starts: the timings are the server's, not the import's
    # Declares what the gateway would; a sampling request finds no provider here.
    services = ClientServices(models=GatewayModels(ProviderRegistry(), list))
    connection = ServerConnection(spec, settings, services=services)
    started = time.perf_counter()
    connection.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                connection.settled.wait(), spec.startup_timeout_s + SETTLE_GRACE_S
            )
        ready_s = time.perf_counter() - started
        state, error = connection.state, connection.last_error
        tools, timings = list(connection.tools), dict(connection.timings)
        initialized, not_offered = connection.initialized, dict(connection.not_offered)
        declared = connection.callbacks.declared()
    finally:
        stopping = time.perf_counter()
        await connection.stop()
    if state is not ServerState.READY and error is None:
        error = f"not ready after {ready_s:.1f}s (state {state.value})"
    return ProbeResult(
        spec=spec,
        state=state,
        # Errors quote what the server wrote and the URL it was reached at: both may hold secrets.
        error=redact_text(error) if state is not ServerState.READY and error else None,
        tools=tools,
        not_offered=not_offered,
        initialized=initialized,
        declared=declared,
        timings=timings,
        ready_s=ready_s,
        stop_s=time.perf_counter() - stopping,
    )
