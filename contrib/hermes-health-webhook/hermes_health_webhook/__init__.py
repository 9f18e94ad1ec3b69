"""hermes-health-webhook: post each change of a model's gateway-wide health to a URL.

Every ``on_health_change`` becomes one ``POST`` of a JSON object (``provider``, ``model``,
``state``, ``reason``, ``retry_at``) to ``health_webhook.url``. The posts are sent in order by
one task per gateway, never by the run whose request changed the health, so a slow or dead
webhook never delays a user; the task and its HTTP client start with the gateway and stop with
it (what is still queued then gets ``health_webhook.timeout_s`` to go).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import TYPE_CHECKING, Any

import httpx2
from loguru import logger

from hermes_core import hookimpl

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.settings.schema import RegisterSetting

NAME = "health_webhook"


class Poster:
    """One gateway's queue of changes and the task that posts them, in order."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._client = httpx2.AsyncClient(timeout=timeout_s)
        self._task = asyncio.create_task(self._post_each(), name="hermes-health-webhook")

    def put(self, change: dict[str, Any]) -> None:
        self._queue.put_nowait(change)

    async def _post_each(self) -> None:
        while True:
            change = await self._queue.get()
            try:
                response = await self._client.post(self.url, json=change)
                response.raise_for_status()
            except httpx2.HTTPError as error:  # an alert lost is logged, never raised
                logger.warning("health webhook: cannot post to {}: {}", self.url, error)
            finally:
                self._queue.task_done()

    async def aclose(self) -> None:
        """Give what is queued ``timeout_s`` to go, then stop the task and the client."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self.timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._client.aclose()


_posters: weakref.WeakKeyDictionary[Gateway, Poster] = weakref.WeakKeyDictionary()


@hookimpl
def register_settings(register: RegisterSetting) -> None:
    register(f"{NAME}.url", str, "", "URL each health change is posted to (empty: none).")
    register(
        f"{NAME}.timeout_s",
        float,
        5,
        "Seconds one post may take.",
        minimum=0,
        maximum=300,
        exclusive_minimum=True,
    )


@hookimpl
def startup(gateway: Gateway) -> None:
    settings = gateway.plugin_settings(NAME)
    if settings.get("url"):
        _posters[gateway] = Poster(str(settings["url"]), float(settings["timeout_s"]))


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    poster = _posters.pop(gateway, None)
    if poster is not None:
        await poster.aclose()


@hookimpl
def on_health_change(
    provider: str,
    model: str | None,
    state: str,
    reason: str,
    retry_at: float | None,
    gateway: Gateway,
) -> None:
    poster = _posters.get(gateway)
    if poster is not None:
        poster.put(
            {
                "provider": provider,
                "model": model,
                "state": state,
                "reason": reason,
                "retry_at": retry_at,
            }
        )
