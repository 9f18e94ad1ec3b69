"""The ``serve_http`` fixture: the built-in ``http`` platform on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from hermes_core.gateway import Gateway
from hermes_core.plugins.http import HttpPlatform
from hermes_core.testing.openai_server import FakeOpenAI
from hermes_core.testing.settings_file import settings_for

#: ``await serve_http(model="ok-primary", fallbacks=None, *, settings=None, **platforms_http)``.
ServeHttp = Callable[..., Awaitable[tuple[Gateway, HttpPlatform]]]


@pytest_asyncio.fixture
async def serve_http(
    make_gateway: Callable[..., Awaitable[Gateway]], fake_openai: FakeOpenAI
) -> AsyncIterator[ServeHttp]:
    """``await serve_http(model="ok-primary", fallbacks=None, *, settings=None,
    **platforms_http)``: a gateway made by ``make_gateway`` (from ``settings``, else from the
    scripted upstream's ``model`` and ``fallbacks``) and a started http platform on a free
    loopback port whose ``platforms.http`` table is ``enabled``, ``port = 0`` and
    ``platforms_http``; returns both. The platforms are stopped after the test, then the
    gateways."""
    platforms: list[HttpPlatform] = []

    async def serve(
        model: str = "ok-primary",
        fallbacks: list[str] | None = None,
        *,
        settings: dict[str, Any] | None = None,
        **http: Any,
    ) -> tuple[Gateway, HttpPlatform]:
        table = {"enabled": True, "port": 0, **http}
        base = settings or settings_for(fake_openai.url, model, fallbacks)
        gateway = await make_gateway({**base, "platforms": {"http": table}})
        platform = HttpPlatform(gateway, table)
        await platform.start()
        platforms.append(platform)
        return gateway, platform

    yield serve
    for platform in platforms:
        await platform.stop()
