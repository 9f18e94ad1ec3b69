"""Built-in ``metrics``: Prometheus metrics of the gateway (see docs/observability.md).

The ``http`` platform serves them at ``GET /metrics``. With ``metrics.port`` set they are also
served on that port, by a small server this plugin starts in ``startup`` and stops in
``shutdown``. Disabling the plugin (``plugins.disabled = ["metrics"]``) removes both.

Each started gateway has its own :class:`~hermes_core.plugins.metrics.instruments.GatewayMetrics`,
found from the ``gateway`` every hook receives and held weakly, so a gateway that is gone takes
its metrics with it.

This module stays light: ``prometheus_client`` is imported when a gateway starts.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from loguru import logger

from hermes_core import hookimpl

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.plugins.metrics.instruments import GatewayMetrics
    from hermes_core.plugins.metrics.server import MetricsServer
    from hermes_core.types import ErrorKind, RunResult, Usage

NAME = "metrics"
DEFAULT_HOST = "127.0.0.1"

#: Each started gateway's metrics.
_metrics: weakref.WeakKeyDictionary[Gateway, GatewayMetrics] = weakref.WeakKeyDictionary()
#: The ``metrics.port`` server of each gateway that has one.
_servers: weakref.WeakKeyDictionary[Gateway, MetricsServer] = weakref.WeakKeyDictionary()


def metrics_for(gateway: Gateway) -> GatewayMetrics | None:
    """The metrics of ``gateway``, or ``None`` when this plugin did not start with it."""
    return _metrics.get(gateway)


@hookimpl(trylast=True)
async def startup(gateway: Gateway) -> None:
    # Imported here, not at module level: prometheus_client costs start-up time that listing
    # plugins or printing --help must not pay.
    from hermes_core.plugins.metrics.instruments import GatewayMetrics
    from hermes_core.plugins.metrics.server import MetricsServer

    metrics = _metrics[gateway] = GatewayMetrics(gateway)
    port = int(gateway.config.get("metrics.port", 0))
    if not port:
        return
    host = str(gateway.config.get("metrics.host", DEFAULT_HOST))
    server = MetricsServer(metrics, host, port)
    try:
        await server.start()
    except OSError as error:
        # Metrics are not worth refusing to serve chats for: say why, and carry on.
        logger.error(
            "metrics: cannot listen on {}:{} ({}); set metrics.port to a free port",
            host,
            port,
            error.strerror or error,
        )
        return
    _servers[gateway] = server


@hookimpl(trylast=True)
async def shutdown(gateway: Gateway) -> None:
    server = _servers.pop(gateway, None)
    if server is not None:
        await server.stop()


@hookimpl(trylast=True)
def post_run(result: RunResult, gateway: Gateway) -> None:
    if (metrics := _metrics.get(gateway)) is not None:
        metrics.record_run(result)


@hookimpl(trylast=True)
def on_llm_request(
    model: str,
    duration_s: float,
    error_kind: ErrorKind | None,
    usage: Usage | None,
    gateway: Gateway,
) -> None:
    if (metrics := _metrics.get(gateway)) is not None:
        metrics.record_llm_request(model, duration_s, error_kind, usage)


@hookimpl(trylast=True)
def on_fallback(from_model: str, to_model: str, gateway: Gateway) -> None:
    if (metrics := _metrics.get(gateway)) is not None:
        metrics.record_fallback(from_model, to_model)


@hookimpl(trylast=True)
def on_evict(reason: str, gateway: Gateway) -> None:
    if (metrics := _metrics.get(gateway)) is not None:
        metrics.record_eviction(reason)
