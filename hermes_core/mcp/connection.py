"""One MCP server's connection, owned from start to end by one long-lived supervisor task.

The SDK's ``stdio_client`` kills the server's whole process group when its ``async with``
exits, and that exit only runs on the task that entered it. So each server gets exactly one
task that connects, serves, notices the connection dying, backs off and reconnects; every
other task (tool calls from agents) only borrows the live ``ClientSession``. Stopping never
uses ``Task.cancel()``: a native cancel can interrupt the SDK's shielded teardown. It cancels
an anyio scope inside the task and lets the task unwind through the SDK's own cleanup.

The ``mcp`` SDK is imported only when a server is actually started: it costs about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from loguru import logger

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.results import result_text
from hermes_core.mcp.settings import PoolSettings

if TYPE_CHECKING:
    import httpx2
    from mcp import ClientSession
    from mcp.client.session import IncomingMessage
    from mcp.shared._stream_protocols import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage
    from mcp_types import Tool as MCPTool

#: Longest error text kept for a server (it is shown on one line).
MAX_ERROR_CHARS = 300
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


class StartupError(Exception):
    """A connection attempt failed; ``str()`` is one line a user can act on."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class _ConnectionLost(Exception):
    """The connection of a ready server ended (the process exited, the stream closed)."""


def _leaf(error: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from anyio task groups."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (inner or list(error.exceptions))[0]
    return error


def _offending_input(error: Exception) -> str:
    """The start of what the server wrote, from the SDK's parse error of that line."""
    from pydantic import ValidationError

    if not isinstance(error, ValidationError) or not error.errors():
        return _one_line(str(error))[:80]
    value = error.errors()[0]["input"]  # the rejected line, or the JSON it held
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text[:80])


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


class _WatchedStream:
    """The transport's read stream, passed through, calling ``on_close`` at end of stream.

    ``ClientSession`` has no public "connection closed" signal; the end of this stream is the
    one thing every transport produces when the server goes away.
    """

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], on_close: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._on_close = on_close

    @property
    def last_context(self) -> Any:
        # The SDK reads the sender's contextvars from this attribute when a stream has it.
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_close()
            raise

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _recording_http_client() -> tuple[httpx2.AsyncClient, list[BaseException]]:
    """An HTTP client for ``streamable_http_client`` that remembers transport errors.

    The SDK turns a refused connection into a bare "Connection closed"; the recorded error
    lets the user read *why* (refused, DNS, TLS).
    """
    import httpx2
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    errors: list[BaseException] = []

    class RecordingTransport(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            try:
                return await super().handle_async_request(request)
            except httpx2.TransportError as error:
                errors.append(error)
                raise

    client = httpx2.AsyncClient(
        transport=RecordingTransport(),
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
    )
    return client, errors


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
    """

    def __init__(self, spec: MCPServerSpec, settings: PoolSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.state = ServerState.IDLE
        self.last_error: str | None = None
        self.starts = 0
        self.restarts = 0
        self.tools: list[MCPTool] = []
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
        """Close the connection (the SDK stops the process group) and await the task."""
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
                cause = _leaf(error)
                permanent = isinstance(cause, StartupError) and cause.permanent
                self._log_failure(permanent)
                if permanent:
                    self._set_state(ServerState.FAILED)
                    self.settled.set()
                    return
            finally:
                self._scope = None
                self._session = None
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
            stream = _WatchedStream(read, self._on_connection_closed)
            async with ClientSession(stream, write, message_handler=self._on_message) as session:
                with anyio.fail_after(self.spec.startup_timeout_s):
                    await session.initialize()
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
        spec = self.spec
        if spec.transport == "http":
            from mcp.client.streamable_http import streamable_http_client

            assert spec.url is not None
            client, self._http_errors = _recording_http_client()
            async with client, streamable_http_client(spec.url, http_client=client) as streams:
                yield streams
            return
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        assert spec.command is not None
        params = StdioServerParameters(
            command=spec.command, args=list(spec.args), env=dict(spec.env) or None, cwd=spec.cwd
        )
        spawned = False
        try:
            # The server's stderr is ours: its own logs stay visible to the operator.
            async with stdio_client(params, errlog=sys.__stderr__ or sys.stderr) as streams:
                spawned = True
                yield streams
        except OSError as error:
            if spawned:
                raise
            raise self._spawn_error(error) from error

    def _spawn_error(self, error: OSError) -> StartupError:
        spec = self.spec
        if spec.cwd is not None and not Path(spec.cwd).is_dir():
            return StartupError(f"working directory not found: {spec.cwd}", permanent=True)
        if isinstance(error, FileNotFoundError):
            return StartupError(f"command not found: {spec.command!r}", permanent=True)
        if isinstance(error, PermissionError):
            return StartupError(f"command is not executable: {spec.command!r}", permanent=True)
        return StartupError(f"cannot start {spec.command!r}: {error}")

    async def _serve(self, session: ClientSession) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if self._connection_closed:
                raise _ConnectionLost("the connection closed (the server exited or went away)")
            if self._tools_changed:
                self._tools_changed = False
                with anyio.fail_after(self.spec.timeout_s):
                    self.tools = await self._list_tools(session)
                logger.info(
                    "mcp server {!r}: tool list changed, now {} tool(s)",
                    self.name,
                    len(self.tools),
                )

    async def _list_tools(self, session: ClientSession) -> list[MCPTool]:
        tools: list[MCPTool] = []
        cursor: str | None = None
        while True:
            from mcp_types import PaginatedRequestParams

            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        allow = self.spec.tools
        if allow is None:
            return tools
        missing = set(allow) - {tool.name for tool in tools}
        if missing:
            logger.warning(
                "mcp server {!r}: allowlisted tool(s) not offered by the server: {}",
                self.name,
                ", ".join(sorted(missing)),
            )
        return [tool for tool in tools if tool.name in allow]

    def _on_connection_closed(self) -> None:
        self._connection_closed = True
        self._wake.set()

    async def _on_message(self, message: IncomingMessage) -> None:
        from mcp_types import ToolListChangedNotification

        # Only flag it: the listing is redone on the supervisor task, never in the SDK's.
        if isinstance(message, ToolListChangedNotification):
            self._tools_changed = True
            self._wake.set()
        elif isinstance(message, Exception):
            if self._garbage is None:
                self._garbage = _offending_input(message)
            logger.warning("mcp server {!r}: transport error: {}", self.name, message)

    def _describe(self, error: BaseException, *, startup: bool) -> str:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        leaf = _leaf(error)
        if isinstance(leaf, StartupError | _ConnectionLost):
            return _one_line(str(leaf))
        if isinstance(leaf, UnicodeDecodeError):
            return _one_line(f"the server wrote bytes that are not UTF-8 on stdout: {leaf.reason}")
        if isinstance(leaf, TimeoutError):
            if startup:
                timeout = self.spec.startup_timeout_s
                garbage = (
                    f"; it wrote output that is not JSON-RPC on stdout (its logs belong on "
                    f"stderr): {self._garbage}"
                    if self._garbage is not None
                    else ""
                )
                return _one_line(
                    f"no MCP handshake within {timeout:g}s (startup_timeout_s){garbage}"
                )
            return f"tool listing timed out after {self.spec.timeout_s:g}s"
        if self._http_errors:
            last = self._http_errors[-1]
            return _one_line(f"cannot reach {self.spec.url}: {type(last).__name__}: {last}")
        if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            when = "during startup" if startup else "unexpectedly"
            return f"the server closed the connection {when} (see its stderr)"
        return _one_line(f"{type(leaf).__name__}: {leaf}")

    # --- tool calls ----------------------------------------------------------------------

    def unavailable(self) -> str:
        """Why this server's tools cannot be called right now, as a tool result."""
        state = self.state.value
        if self.state is ServerState.BACKOFF and self.retry_at is not None:
            state += f", retrying in {max(self.retry_at - time.monotonic(), 0):.0f}s"
        reason = f": {self.last_error}" if self.last_error else ""
        return f"error: MCP server {self.name!r} is unavailable ({state}){reason}"

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool``; every outcome, including failures, is text for the model."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import REQUEST_TIMEOUT

        session = self._session
        if self.state is not ServerState.READY or session is None:
            return self.unavailable()
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
            return f"error: MCP server {self.name!r}: {error.message}"
        except Exception as error:  # the transport failed mid-call: the supervisor reconnects
            return f"error: MCP server {self.name!r}: {self._describe(error, startup=False)}"
        return result_text(result)

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
