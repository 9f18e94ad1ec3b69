"""The ``serve_http`` fixture: the built-in ``http`` platform on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from hermes_core.gateway import Gateway
from hermes_core.plugins.http import HttpPlatform
from hermes_core.store import Store

#: ``await serve_http(settings=None, store=None, **platforms_http)``.
ServeHttp = Callable[..., Awaitable[tuple[Gateway, HttpPlatform]]]


@pytest_asyncio.fixture
async def serve_http(
    make_gateway: Callable[..., Awaitable[Gateway]], hermes_settings: dict[str, Any]
) -> AsyncIterator[ServeHttp]:
    """``await serve_http(settings=None, store=None, **platforms_http)``: a gateway made by
    ``make_gateway`` from ``settings`` (default ``hermes_settings``) and ``store`` (default a
    fresh :class:`~hermes_core.store.MemoryStore`), and a started http platform
    on a free loopback port whose ``platforms.http`` table is ``enabled``, ``port = 0`` and
    ``platforms_http``; returns both. The platforms are stopped after the test, then the
    gateways."""
    platforms: list[HttpPlatform] = []

    async def serve(
        settings: dict[str, Any] | None = None, store: Store | None = None, **http: Any
    ) -> tuple[Gateway, HttpPlatform]:
        table = {"enabled": True, "port": 0, **http}
        gateway = await make_gateway(
            {**(settings or hermes_settings), "platforms": {"http": table}}, store
        )
        platform = HttpPlatform(gateway, table)
        await platform.start()
        platforms.append(platform)
        return gateway, platform

    yield serve
    for platform in platforms:
        await platform.stop()
