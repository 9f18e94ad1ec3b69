"""The small server behind ``metrics.port``: ``GET /metrics`` of one gateway on its own port."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from loguru import logger
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hermes_core.asgi import EmbeddedServer, listen
from hermes_core.plugins.metrics.instruments import GatewayMetrics

#: Seconds the ``metrics.port`` server gets to finish a scrape in progress when stopping.
STOP_GRACE_S = 5


class MetricsServer:
    """``GET /metrics`` of one gateway on a port of its own, served inside the event loop.

    Scrapes run on the loop, like the runs that change what they read, so a scrape never sees
    state half-updated. After :meth:`start`, :attr:`port` is the bound port.
    """

    def __init__(self, metrics: GatewayMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def _scrape(self, request: Request) -> Response:
        body, content_type = self.metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` when the port cannot be had."""
        sock = listen(self.host, self.port, backlog=64)
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/metrics", self._scrape, methods=["GET"])])
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # never reconfigure the application's logging
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=STOP_GRACE_S,
        )
        self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name="hermes-core metrics server"
        )
        while not self._server.started:
            if self._task.done():
                sock.close()
                await self._task  # re-raises what stopped it
                raise OSError(f"the metrics server on {self.host}:{self.port} exited at start")
            await asyncio.sleep(0.01)
        logger.info("metrics served on http://{}:{}/metrics", self.host, self.port)

    async def stop(self) -> None:
        """Close the port and await the server task (idempotent)."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await asyncio.wait({self._task}, timeout=STOP_GRACE_S + 5)
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = self._task = None
