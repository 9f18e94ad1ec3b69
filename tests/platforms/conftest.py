"""The ``serve_http`` fixture: a started gateway and http platform on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from helpers_http import Serve

from hermes_core.gateway import Gateway
from hermes_core.plugins.http import HttpPlatform
from hermes_core.testing import FakeOpenAI, settings_for


@pytest_asyncio.fixture
async def serve_http(make_gateway: Any, fake_openai: FakeOpenAI) -> AsyncIterator[Serve]:
    """``await serve_http(model, fallbacks, **platforms_http)``: a started gateway and http
    platform on a free loopback port; both stopped after the test."""
    platforms: list[HttpPlatform] = []

    async def serve(
        model: str = "ok-primary", fallbacks: list[str] | None = None, **http: Any
    ) -> tuple[Gateway, HttpPlatform]:
        table = {"enabled": True, "port": 0, **http}
        settings = settings_for(fake_openai.url, model, fallbacks, platforms={"http": table})
        gateway = await make_gateway(settings)
        platform = HttpPlatform(gateway, table)
        await platform.start()
        platforms.append(platform)
        return gateway, platform

    yield serve
    for platform in platforms:
        await platform.stop()
