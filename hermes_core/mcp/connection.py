"""One MCP server's connection, owned from start to end by one long-lived supervisor task.

A transport's teardown (for stdio: ending the server's whole process group, see
:mod:`hermes_core.mcp.stdio`) runs when its ``async with`` exits, on the task that entered
it. So each server gets exactly one task that connects, serves, notices the connection dying,
backs off and reconnects; every other task (tool calls from agents) only borrows the live
``ClientSession``. Stopping never uses ``Task.cancel()``: a native cancel can interrupt a
shielded teardown. It cancels an anyio scope inside the task and lets the task unwind through
the transport's own cleanup, so the next attempt starts only once the last one's processes
are gone.

The ``mcp`` SDK is imported only when a server is actually started: it costs about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import anyio
from loguru import logger

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.client_callbacks import ClientCallbacks, ClientServices
from hermes_core.mcp.elicitation import CallsInFlight
from hermes_core.mcp.failures import ConnectionLost, auth_problem, describe_failure, leaf_error
from hermes_core.mcp.http import http_streams
from hermes_core.mcp.identity import client_info
from hermes_core.mcp.ledger import ProcessLedger
from hermes_core.mcp.listing import list_pages, offered_tools
from hermes_core.mcp.naming import offered_name
from hermes_core.mcp.noise import BadOutput, rejected_input, sample
from hermes_core.mcp.results import RESOURCE_TOOL, result_text
from hermes_core.mcp.settings import PoolSettings
from hermes_core.mcp.stdio import StartupError, stdio_streams
from hermes_core.mcp.watched import WatchedStream

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.client.session import IncomingMessage
    from mcp.shared._stream_protocols import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage
    from mcp_types import InitializeResult
    from mcp_types import Tool as MCPTool

#: Recent state changes kept per server, for diagnosis (and the tests).
HISTORY_LENGTH = 50


class ServerState(StrEnum):
    """Where a server's connection is in its life."""

    IDLE = "idle"  #: configured, not started yet (the pool starts servers on first use)
    STARTING = "starting"  #: spawning / connecting, handshake and tool listing in progress
    READY = "ready"  #: connected; its tools are offered
    BACKOFF = "backoff"  #: the last connection died or failed; waiting before reconnecting
    FAILED = "failed"  #: cannot work until the settings change (e.g. the command is missing)
    STOPPED = "stopped"  #: shut down with the gateway


class ServerConnection:
    """One configured server: its supervisor task, state, cached tools and call path.

    :ivar state: the :class:`ServerState`.
    :ivar last_error: the latest failure, one line (``None`` until something fails).
    :ivar starts: connection attempts made (each spawns the command for stdio).
    :ivar restarts: attempts after the first.
    :ivar tools: the last tool listing (allowlist applied); kept while the server is down.
    :ivar timings: seconds taken by the latest ``connect``, ``initialize`` and ``list_tools``.
    :ivar history: recent ``(monotonic time, state)`` changes, oldest first.
    :ivar backoff_s: the current (or last) wait before a reconnect, ``None`` before any.
    :ivar retry_at: when the current wait ends (``time.monotonic()``), ``None`` when not waiting.
    :ivar bad_output: its output lines that were not JSON-RPC, counted and reported.
    :ivar ledger: where its process groups are recorded while they run (stdio).
    """

    def __init__(
        self,
        spec: MCPServerSpec,
        settings: PoolSettings,
        ledger: ProcessLedger | None = None,
        services: ClientServices | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.ledger = ledger if ledger is not None else ProcessLedger()
        self.bad_output = BadOutput(spec.name)
        self.calls = CallsInFlight()
        #: The client capabilities this server is offered, and the callbacks behind them.
        self.callbacks = ClientCallbacks(spec, services or ClientServices(), self.calls)
        self.state = ServerState.IDLE
        self.last_error: str | None = None
        self.starts = 0
        self.restarts = 0
        self.tools: list[MCPTool] = []
        #: Tools the server lists that are not offered, with why (``mcp test`` shows them).
        self.not_offered: dict[str, str] = {}
        #: The server's answer to ``initialize`` (its info and capabilities), once connected.
        self.initialized: InitializeResult | None = None
        self.timings: dict[str, float] = {}
        self.history: deque[tuple[float, ServerState]] = deque(maxlen=HISTORY_LENGTH)
        self.backoff_s: float | None = None
        self.retry_at: float | None = None
        #: Set once the first attempt has ended, ready or not: the pool waits on it once.
        self.settled = asyncio.Event()
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._wake = asyncio.Event()
        self._connection_closed = False
        self._tools_changed = False
        #: Clear while a ``tools/list_changed`` is being answered with a new listing.
        self._listing_current = asyncio.Event()
        self._listing_current.set()
        self._http_errors: list[BaseException] = []
        #: The first line of this attempt that was not JSON-RPC, for the start-up error.
        self._garbage: str | None = None
        self._ready_at: float | None = None
        self._set_state(ServerState.IDLE)

    def __repr__(self) -> str:
        return f"<ServerConnection {self.spec.name} {self.state}>"

    @property
    def name(self) -> str:
        return self.spec.name

    def _set_state(self, state: ServerState) -> None:
        self.state = state
        self.history.append((time.monotonic(), state))

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervisor task (once); returns at once."""
        if self._task is None and not self._stopping:
            self._task = asyncio.create_task(
                self._supervise(), name=f"hermes-core mcp server {self.name}"
            )

    async def stop(self) -> None:
        """Close the connection (ending a stdio server's process group) and await the task."""
        if self.state is ServerState.STOPPED:
            return
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        if self._scope is not None:
            self._scope.cancel()
        if self._task is not None:
            # asyncio.wait, not await: a caller cancelled meanwhile must not cancel the task.
            await asyncio.wait({self._task})
            if not self._task.cancelled() and (error := self._task.exception()) is not None:
                logger.opt(exception=error).error("mcp server {!r} supervisor crashed", self.name)
        self.bad_output.flush()  # what was counted since the last report
        self._set_state(ServerState.STOPPED)
        self.settled.set()

    async def _supervise(self) -> None:
        delay = self.settings.backoff_initial_s
        while not self._stopping:
            self.starts += 1
            if self.starts > 1:
                self.restarts += 1
            self._ready_at = None
            try:
                with anyio.CancelScope() as self._scope:
                    await self._connect()
            except Exception as error:
                if self._stopping:  # a failure while closing on purpose is not news
                    return
                self.last_error = self._describe(error, startup=self._ready_at is None)
                cause = leaf_error(error)
                permanent = isinstance(cause, StartupError) and cause.permanent
                self._log_failure(permanent)
                if permanent:
                    self._set_state(ServerState.FAILED)
                    self.settled.set()
                    return
            finally:
                self._scope = None
                self._session = None
                self._listing_current.set()  # nothing left to wait for on a dead connection
            self.settled.set()
            if self._stopping:
                return
            if self._was_healthy():
                delay = self.settings.backoff_initial_s
            self.backoff_s = delay
            self.retry_at = time.monotonic() + delay
            self._set_state(ServerState.BACKOFF)
            with anyio.move_on_after(delay):
                await self._stop_requested.wait()
            self.retry_at = None
            delay = min(delay * 2, self.settings.backoff_max_s)

    def _was_healthy(self) -> bool:
        """Whether the connection that just ended stayed up ``healthy_after_s``."""
        up_since = self._ready_at
        return up_since is not None and time.monotonic() - up_since >= self.settings.healthy_after_s

    def _log_failure(self, permanent: bool) -> None:
        if permanent:
            logger.error("mcp server {!r} failed: {} (not retried)", self.name, self.last_error)
        else:
            logger.warning(
                "mcp server {!r}: {} (restart {} with backoff)",
                self.name,
                self.last_error,
                self.restarts + 1,
            )

    # --- one connection ------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connect, hand-shake, list tools, then serve until the connection ends or stop.

        Sets ``_ready_at`` once ready, so the supervisor can judge the connection's health
        even when it later fails. Returns normally only on stop.
        """
        from mcp import ClientSession

        self._set_state(ServerState.STARTING)
        self._connection_closed = self._tools_changed = False
        self._garbage = None
        self._wake.clear()
        started = time.perf_counter()
        async with self._transport() as (read, write):
            connected = time.perf_counter()
            stream = WatchedStream(read, self._on_connection_closed)
            async with ClientSession(
                stream,
                write,
                message_handler=self._on_message,
                client_info=client_info(),
                **self.callbacks.session_arguments(),
            ) as session:
                with anyio.fail_after(self.spec.startup_timeout_s):
                    self.initialized = await session.initialize()
                    initialized = time.perf_counter()
                    self.tools = await self._list_tools(session)
                self.timings = {
                    "connect": connected - started,
                    "initialize": initialized - connected,
                    "list_tools": time.perf_counter() - initialized,
                }
                self._session = session
                self._set_state(ServerState.READY)
                self.settled.set()
                logger.info(
                    "mcp server {!r} ready with {} tool(s) in {:.2f}s",
                    self.name,
                    len(self.tools),
                    time.perf_counter() - started,
                )
                self._ready_at = time.monotonic()
                await self._serve(session)

    @contextlib.asynccontextmanager
    async def _transport(
        self,
    ) -> AsyncIterator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
        self._http_errors = []
        if self.spec.transport == "http":
            async with http_streams(self.spec, self._http_errors) as streams:
                yield streams
        else:
            async with stdio_streams(self.spec, self.ledger, self._bad_line) as streams:
                yield streams

    async def _serve(self, session: ClientSession) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if self._connection_closed:
                raise ConnectionLost("the connection closed (the server exited or went away)")
            if self._tools_changed:
                self._tools_changed = False
                with anyio.fail_after(self.spec.timeout_s):
                    self.tools = await self._list_tools(session)
                self._listing_current.set()
                logger.info(
                    "mcp server {!r}: tool list changed, now {} tool(s)",
                    self.name,
                    len(self.tools),
                )

    async def _list_tools(self, session: ClientSession) -> list[MCPTool]:
        listed = await list_pages(session.list_tools, "tools")
        return offered_tools(self.spec, listed, self.not_offered)

    async def current_tools(self) -> list[MCPTool]:
        """The tools, relisted first when the server said they changed (bounded by
        ``timeout_s``): a run right after a tool call that added a tool offers it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listing_current.wait(), self.spec.timeout_s)
        return self.tools

    def _on_connection_closed(self) -> None:
        self._connection_closed = True
        self._wake.set()

    async def _on_message(self, message: IncomingMessage) -> None:
        from mcp_types import ToolListChangedNotification

        # Only flag it: the listing is redone on the supervisor task, never in the SDK's.
        if isinstance(message, ToolListChangedNotification):
            self._tools_changed = True
            self._listing_current.clear()
            self._wake.set()
        elif isinstance(message, Exception):
            self._bad_line(rejected_input(message))

    def _bad_line(self, text: str) -> None:
        """The server sent something that is not JSON-RPC: count it, keep the first for the
        start-up error."""
        if self._garbage is None:
            self._garbage = sample(text)
        self.bad_output.add(text)

    def _describe(self, error: BaseException, *, startup: bool) -> str:
        return describe_failure(
            error, self.spec, startup=startup, garbage=self._garbage, http_errors=self._http_errors
        )

    # --- tool calls ----------------------------------------------------------------------

    def live_session(self) -> ClientSession | None:
        """The session to send requests on, None unless the server is ready."""
        return self._session if self.state is ServerState.READY else None

    def unavailable(self) -> str:
        """Why this server's tools cannot be called right now, as a tool result."""
        state = self.state.value
        if self.state is ServerState.BACKOFF and self.retry_at is not None:
            state += f", retrying in {max(self.retry_at - time.monotonic(), 0):.0f}s"
        reason = f": {self.last_error}" if self.last_error else ""
        return f"error: MCP server {self.name!r} is unavailable ({state}){reason}"

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool``; every outcome, including failures, is text for the model, followed by
        what the model should know of requests the server made meanwhile (a declined question)."""
        session = self.live_session()
        if session is None:
            return self.unavailable()
        with self.calls.call() as call:
            text = await self._call(session, tool, arguments)
        return "\n".join([text, *call.notes])

    async def _call(self, session: ClientSession, tool: str, arguments: dict[str, Any]) -> str:
        from mcp.shared.exceptions import MCPError
        from mcp_types import REQUEST_TIMEOUT

        try:
            result = await session.call_tool(
                tool, arguments, read_timeout_seconds=self.spec.timeout_s
            )
        except MCPError as error:
            if error.code == REQUEST_TIMEOUT:
                return (
                    f"error: tool {tool!r} on MCP server {self.name!r} timed out after "
                    f"{self.spec.timeout_s:g}s"
                )
            problem = auth_problem(self.spec, error, self._http_errors) or error.message
            return f"error: MCP server {self.name!r}: {problem}"
        except Exception as error:  # the transport failed mid-call: the supervisor reconnects
            return f"error: MCP server {self.name!r}: {self._describe(error, startup=False)}"
        return result_text(result, self.resource_tool)

    @property
    def resource_tool(self) -> str | None:
        """The offered name of the tool that reads this server's resources, if offered."""
        capabilities = self.initialized.capabilities if self.initialized is not None else None
        if not self.spec.features.resources or capabilities is None or not capabilities.resources:
            return None
        if self.spec.tools is not None and RESOURCE_TOOL not in self.spec.tools:
            return None  # an allowlist offers only what it names
        return offered_name(self.name, RESOURCE_TOOL)

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for ``mcp list`` and ``/status``."""
        return {
            "name": self.name,
            "source": self.spec.source,
            "transport": self.spec.transport,
            "state": self.state.value,
            "tools": [tool.name for tool in self.tools],
            "starts": self.starts,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }
