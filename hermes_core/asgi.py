"""Serving an ASGI app inside the gateway's event loop (the HTTP platform, the metrics port)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handlers alone: the runner owns SIGINT/SIGTERM.

    uvicorn 0.54 has no setting for this; ``serve()`` wraps itself in ``capture_signals()``,
    which replaces the process's handlers and re-raises captured signals on exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening, non-blocking socket: a taken port fails here, in ``start()``,
    rather than inside uvicorn (which would call ``sys.exit``)."""
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
