"""Helpers for tests of the ``http`` platform: the ``serve_http`` fixture (a plugin of the
suite, see tests/conftest.py), its clients and request bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openai
import pytest_asyncio

from hermes_core.gateway import Gateway
from hermes_core.plugins.http import HttpPlatform
from hermes_core.testing import FakeOpenAI, settings_for

KEY = "sk-hermes-test"
Serve = Callable[..., Awaitable[tuple[Gateway, HttpPlatform]]]


def client_for(platform: HttpPlatform, api_key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{platform.url}/v1", api_key=api_key, max_retries=0)


def sync_client_for(platform: HttpPlatform, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=api_key, max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest_asyncio.fixture
async def serve_http(make_gateway: Any, fake_openai: FakeOpenAI) -> AsyncIterator[Serve]:
    """``await serve_http(model, fallbacks, settings=None, **platforms_http)``: a started
    gateway and http platform on a free loopback port (the scripted upstream's ``model`` and
    ``fallbacks``, or the given ``settings``); both stopped after the test."""
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
