"""Serving an ASGI app inside the gateway's event loop (the HTTP platform, the metrics port).

:class:`EmbeddedServer` is the one start/stop both use: it binds the socket itself (a taken port
raises ``OSError`` from :meth:`~EmbeddedServer.start` instead of uvicorn calling ``sys.exit``),
runs uvicorn as a task it owns with signal handling left to the runner, and on :meth:`stop`
gives responses in progress a bounded time before cancelling the task.

Connections that never finish sending their request headers are closed after
``header_timeout_s``, and a request that is not valid HTTP gets a 400 whose body the server's
owner may render (see :mod:`hermes_core.http_protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from loguru import logger

from hermes_core.http_protocol import DEFAULT_HEADER_TIMEOUT_S, BadRequestBody, Config

#: Extra seconds :meth:`EmbeddedServer.stop` waits past uvicorn's own graceful shutdown.
STOP_MARGIN_S = 5


class _Uvicorn(uvicorn.Server):
    """A uvicorn server that leaves signal handlers alone: the runner owns SIGINT/SIGTERM.

    uvicorn 0.54 has no setting for this; ``serve()`` wraps itself in ``capture_signals()``,
    which replaces the process's handlers and re-raises captured signals on exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedServer:
    """``app`` served by uvicorn as a task of the running loop. After :meth:`start`,
    :attr:`port` is the bound port (useful with port 0)."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        stop_grace_s: float,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        bad_request_body: BadRequestBody | None = None,
    ) -> None:
        self.name = name
        self.stop_grace_s = stop_grace_s
        self.port: int | None = None
        self._config = Config(
            app,
            header_timeout_s=header_timeout_s,
            bad_request_body=bad_request_body,
            lifespan="off",
            log_config=None,  # never reconfigure the application's logging
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, round(stop_grace_s)),
        )
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the server task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self, host: str, port: int, *, backlog: int) -> int:
        """Bind ``host:port`` and serve; return the bound port once connections are accepted.

        Raises ``OSError`` (``socket.gaierror`` for a host that does not resolve) when the
        address cannot be had.
        """
        if self._task is not None:
            raise RuntimeError(f"{self.name} is already started")
        sock = listen(host, port, backlog)
        self.port = sock.getsockname()[1]
        self._server = _Uvicorn(self._config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=self.name)
        while not self._server.started:
            if self._task.done():
                sock.close()
                await self._task  # re-raises what stopped it
                raise OSError(f"{self.name} on {host}:{self.port} exited while starting")
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        """Close the port, give responses in progress ``stop_grace_s``, then end the task.
        Idempotent."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        # uvicorn itself cancels handlers after its graceful shutdown; this bounds the rest.
        await asyncio.wait({self._task}, timeout=self.stop_grace_s + STOP_MARGIN_S)
        if not self._task.done():
            logger.warning("{} did not stop in time; cancelling it", self.name)
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait_closed(self) -> None:
        """Return once the server task has ended (at once if it never started)."""
        if self._task is not None:
            await asyncio.wait({self._task})


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening, non-blocking socket for ``host:port``."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
