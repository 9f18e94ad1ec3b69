"""The stdio transport: a server's whole process group is ours, from its spawn to its end.

The SDK's ``stdio_client`` kills the server's process group only when the server outlives its
closed stdin by 2 s. A server that exits at the end of its stdin, or crashes, leaves every
helper it started running, one more at each restart. This transport speaks the same
newline-delimited JSON-RPC but, however the connection ends, ends the whole group (SIGTERM,
grace, SIGKILL) before it returns, so a server is never restarted while the last one's
helpers live. It notices the server's exit by itself (a helper that inherited stdout would
hide the end of the stream) and hands lines that are not JSON-RPC to a callback, where the
SDK logs a traceback for each. Groups are recorded in a
:class:`~hermes_core.mcp.ledger.ProcessLedger` while they run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import AsyncResource, ObjectReceiveStream, ObjectSendStream, Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from loguru import logger

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.groups import terminate_group
from hermes_core.mcp.ledger import ProcessLedger

if TYPE_CHECKING:
    from mcp.shared.message import SessionMessage

    Streams = tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]

# The mcp SDK (about a second to import) is imported inside functions, when a server starts.

#: How long a server has to exit by itself once its stdin is closed (the MCP spec's first
#: step, and the SDK's value), then how long its group has between SIGTERM and SIGKILL.
EXIT_GRACE_S = 2.0
TERM_GRACE_S = 2.0
#: Once the server has exited: how long the reader may go on reading what it wrote.
READ_REST_S = 0.5
#: How long the writer may take to finish the message it is sending when the end comes.
FLUSH_S = 0.5
#: Polling for an exit where Linux's pidfd is not available.
EXIT_POLL_S = 0.05

BadLine = Callable[[str], None]


class StartupError(Exception):
    """A connection attempt failed; ``str()`` is one line a user can act on."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def spawn_error(spec: MCPServerSpec, error: OSError) -> StartupError:
    """What a failed spawn of ``spec``'s command means, permanent when settings must change."""
    if spec.cwd is not None and not Path(spec.cwd).is_dir():
        return StartupError(f"working directory not found: {spec.cwd}", permanent=True)
    if isinstance(error, FileNotFoundError):
        return StartupError(f"command not found: {spec.command!r}", permanent=True)
    if isinstance(error, PermissionError):
        return StartupError(f"command is not executable: {spec.command!r}", permanent=True)
    return StartupError(f"cannot start {spec.command!r}: {error}")


async def _wait_exit(process: Process) -> None:
    """Return once ``process`` has exited: a pidfd on Linux, polling elsewhere."""
    try:
        fd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return  # exited and reaped already
    except (AttributeError, OSError):  # not Linux (or too old a kernel): poll
        while process.returncode is None:
            await anyio.sleep(EXIT_POLL_S)
        return
    try:
        await anyio.wait_readable(fd)  # a pidfd turns readable when its process exits
    finally:
        os.close(fd)


async def _close(stream: AsyncResource | None) -> None:
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        if stream is not None:
            await stream.aclose()


class _Pipes:
    """The tasks bridging one server process's pipes to the session's memory streams."""

    def __init__(self, process: Process, on_bad_line: BadLine) -> None:
        import mcp_types
        from mcp.shared.message import SessionMessage

        self._parse = mcp_types.jsonrpc_message_adapter.validate_json
        self._message = SessionMessage
        self.process = process
        self.on_bad_line = on_bad_line
        self.inbox: MemoryObjectSendStream[SessionMessage | Exception]
        self.read_stream: MemoryObjectReceiveStream[SessionMessage | Exception]
        self.inbox, self.read_stream = anyio.create_memory_object_stream(0)
        self.write_stream: MemoryObjectSendStream[SessionMessage]
        self.outbox: MemoryObjectReceiveStream[SessionMessage]
        self.write_stream, self.outbox = anyio.create_memory_object_stream(0)
        self.read_done = anyio.Event()
        self.write_done = anyio.Event()

    async def read(self) -> None:
        """Deliver each JSON-RPC line of stdout, report the others, until the end of stdout;
        once nobody listens, read on anyway: a server blocked on a full pipe cannot exit."""
        assert self.process.stdout is not None
        # Strict UTF-8: bytes that are not end the attempt, and say so (see _describe).
        stdout = TextReceiveStream(self.process.stdout)
        pending, delivering = "", True
        try:
            async with self.inbox:
                async for chunk in stdout:
                    *lines, pending = (pending + chunk).split("\n")
                    for line in lines:
                        delivering = delivering and await self._deliver(line)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            pass  # the stop closed stdout under the read
        finally:
            self.read_done.set()

    async def _deliver(self, line: str) -> bool:
        """Hand one line to the session; False once the session is gone."""
        try:
            message = self._parse(line, by_name=False)
        except ValueError:  # pydantic's ValidationError is one
            self.on_bad_line(line)
            return True
        inbox: ObjectSendStream[SessionMessage | Exception] = self.inbox
        try:
            await inbox.send(self._message(message))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    async def write(self) -> None:
        assert self.process.stdin is not None
        outbox: ObjectReceiveStream[SessionMessage] = self.outbox
        try:
            async with outbox:
                async for message in outbox:
                    text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await self.process.stdin.send(f"{text}\n".encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # The server stopped reading: end the session's stream, or a request would hang.
            await self.inbox.aclose()
        finally:
            self.write_done.set()

    async def watch(self, pgid: int) -> None:
        """On the server's exit: end its group, then the session's stream."""
        await _wait_exit(self.process)
        # Its helpers go with it; they may hold stdout open, hiding the end of the stream.
        await terminate_group(pgid, TERM_GRACE_S)
        with anyio.move_on_after(READ_REST_S):
            await self.read_done.wait()
        await self.inbox.aclose()

    async def stop(self, pgid: int) -> bool:
        """The MCP spec's shutdown, then the group: returns whether no member is left.

        Runs shielded, and on its own: a cancel (the connection's stop) has ended the pipe
        tasks already.
        """
        self.read_stream.close()  # a reader still running drains stdout from now on
        self.write_stream.close()
        with anyio.move_on_after(FLUSH_S):
            await self.write_done.wait()
        await _close(self.process.stdin)
        with anyio.move_on_after(EXIT_GRACE_S):
            await _wait_exit(self.process)
        # Exited or not, nothing of its group may stay.
        gone = await terminate_group(pgid, TERM_GRACE_S)
        await _close(self.process.stdout)
        return gone


@contextlib.asynccontextmanager
async def stdio_streams(
    spec: MCPServerSpec, ledger: ProcessLedger, on_bad_line: BadLine
) -> AsyncIterator[Streams]:
    """Start ``spec``'s command in a new session and yield the session's streams to it.

    Raises :class:`StartupError` when the command cannot be started. On exit, whatever the
    reason (end, error, cancel), every process of its group is gone, or logged as a survivor
    of SIGKILL and left recorded for the next gateway.
    """
    from mcp.client.stdio import get_default_environment

    assert spec.command is not None
    try:
        process = await anyio.open_process(
            [spec.command, *spec.args],
            env=get_default_environment() | dict(spec.env),
            stderr=sys.__stderr__ or sys.stderr,  # the server's own logs stay visible
            cwd=spec.cwd,
            start_new_session=True,
        )
    except OSError as error:
        raise spawn_error(spec, error) from error
    # No await before the try below: a cancel delivered there would leak the group.
    pgid = process.pid  # start_new_session: the leader's pid is the group's id
    ledger.record(pgid, spec.name)
    pipes = _Pipes(process, on_bad_line)
    gone = False
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipes.read)
            tasks.start_soon(pipes.write)
            tasks.start_soon(pipes.watch, pgid)
            try:
                yield pipes.read_stream, pipes.write_stream
            finally:
                with anyio.CancelScope(shield=True):  # a cancelled caller must not leak it
                    gone = await pipes.stop(pgid)
                tasks.cancel_scope.cancel()
    finally:
        if gone:
            ledger.forget(pgid)
        else:
            logger.error(
                "mcp server {!r}: process group {} survived SIGKILL; it stays recorded",
                spec.name,
                pgid,
            )
