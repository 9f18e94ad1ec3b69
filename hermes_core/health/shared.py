"""Model health shared by every gateway on one database (a :attr:`~hermes_core.store.Store.shared`
store with LISTEN/NOTIFY: PostgreSQL).

Each breaker's open and closed transitions decided by this gateway are published on
:data:`CHANNEL`; those of the other gateways are applied to this one's :class:`ModelHealth`,
in the order they arrive, without being published again. So a primary one gateway found dead
is skipped by all of them without a request of their own, and the probe that closes it again
reopens it everywhere. Half-open is not shared: a probe in flight is its gateway's own, and a
gateway that died mid-probe must not leave the others waiting for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from loguru import logger

from hermes_core.health.breaker import State
from hermes_core.health.registry import ModelHealth, nobody, target_name
from hermes_core.store import Store

CHANNEL = "hermes_health"
#: A NOTIFY payload is at most 8000 bytes: a longer reason is cut.
MAX_REASON = 2000
SHARED_STATES = {State.OPEN.value, State.CLOSED.value}


@runtime_checkable
class Channels(Protocol):
    """What a store offers for sharing news between processes (:class:`PostgresStore`)."""

    async def notify(self, channel: str, payload: str) -> None: ...

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None: ...


class SharedHealth:
    """Publishes one gateway's health transitions and applies the other gateways'."""

    def __init__(self, health: ModelHealth) -> None:
        self.health = health
        #: Who sent a notification: this gateway ignores its own.
        self.sender = uuid.uuid4().hex
        self._channels: Channels | None = None
        self._arrived: asyncio.Queue[str] = asyncio.Queue()
        self._applier: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._channels is not None

    async def start(self, store: Store) -> None:
        """Share health over ``store`` if several gateways may use it; else do nothing."""
        if not store.shared or not isinstance(store, Channels):
            return
        await store.listen(CHANNEL, self._arrived.put_nowait)
        self._channels = store
        self._applier = asyncio.create_task(self._apply_all(), name="hermes-core shared health")
        self.health.publish = self._publish

    async def stop(self) -> None:
        self.health.publish = nobody
        self._channels = None
        applier, self._applier = self._applier, None
        if applier is not None:
            applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await applier

    async def _publish(
        self, provider: str, model: str | None, state: str, reason: str, retry_at: float | None
    ) -> None:
        if self._channels is None or state not in SHARED_STATES:
            return
        news = {
            "sender": self.sender,
            "provider": provider,
            "model": model,
            "state": state,
            "reason": reason[:MAX_REASON],
            "retry_at": retry_at,
        }
        try:
            await self._channels.notify(CHANNEL, json.dumps(news))
        except Exception as error:  # the run that caused it goes on: only the others miss it
            logger.warning(
                "health: cannot tell other gateways {}:{} is {}: {}", provider, model, state, error
            )

    async def _apply_all(self) -> None:
        while True:
            await self._apply(await self._arrived.get())

    async def _apply(self, payload: str) -> None:
        try:
            news = json.loads(payload)
            if news["sender"] == self.sender:
                return
            key = (str(news["provider"]), None if news["model"] is None else str(news["model"]))
            state = State(news["state"])
            retry_at = None if news["retry_at"] is None else float(news["retry_at"])
            reason = str(news["reason"])
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("health: ignored a malformed notification on {}: {}", CHANNEL, error)
            return
        logger.debug("health: {} is {} in another gateway", target_name(key), state)
        await self.health.apply(key, state, reason, retry_at)
