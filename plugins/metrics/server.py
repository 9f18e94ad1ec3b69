"""The small server behind ``metrics.port``: ``GET /metrics`` of one gateway on its own port."""

from __future__ import annotations

from loguru import logger
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hermes_core.asgi import EmbeddedServer
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
        app = Starlette(routes=[Route("/metrics", self._scrape, methods=["GET"])])
        self._server = EmbeddedServer(
            app, name="hermes-core metrics server", stop_grace_s=STOP_GRACE_S
        )

    async def _scrape(self, request: Request) -> Response:
        body, content_type = self.metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` when the port cannot be had."""
        self.port = await self._server.start(self.host, self.port, backlog=64)
        logger.info("metrics served on http://{}:{}/metrics", self.host, self.port)

    async def stop(self) -> None:
        """Close the port and await the server task (idempotent)."""
        await self._server.stop()
