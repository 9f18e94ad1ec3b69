"""Helpers for tests of the ``http`` platform: its clients and request bodies.

The ``serve_http`` fixture (tests/platforms/conftest.py) starts a gateway and the platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import openai

from hermes_core.gateway import Gateway
from hermes_core.plugins.http import HttpPlatform

KEY = "sk-hermes-test"
Serve = Callable[..., Awaitable[tuple[Gateway, HttpPlatform]]]


def client_for(platform: HttpPlatform, api_key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{platform.url}/v1", api_key=api_key, max_retries=0)


def sync_client_for(platform: HttpPlatform, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=api_key, max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]
