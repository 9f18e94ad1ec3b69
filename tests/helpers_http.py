"""Helpers for tests of the ``http`` platform (served by the kit's ``serve_http``): the
official clients pointed at it, and request bodies."""

from __future__ import annotations

from typing import Any

import openai

from hermes_core.plugins.http import HttpPlatform

KEY = "sk-hermes-test"


def client_for(platform: HttpPlatform, api_key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{platform.url}/v1", api_key=api_key, max_retries=0)


def sync_client_for(platform: HttpPlatform, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=api_key, max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]
