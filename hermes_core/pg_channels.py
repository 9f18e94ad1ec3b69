"""LISTEN/NOTIFY for the PostgreSQL store: how gateways on one database tell each other news.

A notification is sent over any pooled connection (``pg_notify``); listening needs a connection
of its own that is never handed to a run, so :class:`Listener` opens one on first use and keeps
it until the store closes. asyncpg delivers each payload to the callback on the event loop.
When the server drops that connection (a restart, a failover, an operator's
``pg_terminate_backend``), the listener opens a new one and listens again on every channel;
news sent while it was away is missed, never delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core.pg_schema import connect_error, shown

if TYPE_CHECKING:
    import asyncpg

#: Called with the payload of each notification on a channel listened to.
OnPayload = Callable[[str], None]
#: Seconds before the first attempt to reconnect, doubled after each failed one, up to the max.
RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 30.0


class Listener:
    """The one connection a store listens on, opened lazily by :meth:`listen` and reopened,
    by a task of its own, whenever the server drops it."""

    def __init__(
        self, url: str, password: str | None, settings: dict[str, str], timeout_s: float
    ) -> None:
        self._url = url
        self._password = password
        self._settings = settings
        self._timeout_s = timeout_s
        self._connection: asyncpg.Connection | None = None
        self._callbacks: dict[str, OnPayload] = {}
        self._reconnecting: asyncio.Task[None] | None = None

    async def listen(self, channel: str, callback: OnPayload) -> None:
        if self._reconnecting is None:  # else the new connection listens on it with the rest
            if self._connection is None:
                self._connection = await self._connect()
            await self._connection.add_listener(channel, _delivering_to(callback))
        self._callbacks[channel] = callback

    async def close(self) -> None:
        self._callbacks.clear()
        reconnecting, self._reconnecting = self._reconnecting, None
        if reconnecting is not None:
            reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconnecting
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg  # here: the store imported it already when it opened

        try:
            connection = await asyncpg.connect(
                self._url,
                password=self._password,
                timeout=self._timeout_s,
                server_settings=self._settings,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise connect_error(self._url, error) from None
        connection.add_termination_listener(self._lost)
        return connection

    def _lost(self, connection: Any) -> None:
        # asyncpg calls this for every close; only a drop of the live connection is a loss.
        if connection is not self._connection or self._reconnecting is not None:
            return
        self._connection = None
        logger.warning(
            "store: the connection listening to {} was lost; reconnecting", shown(self._url)
        )
        self._reconnecting = asyncio.create_task(
            self._reconnect(), name="hermes-core store listener reconnect"
        )

    async def _reconnect(self) -> None:
        wait_s = RECONNECT_FIRST_S
        while True:
            await asyncio.sleep(wait_s)
            connection = None
            try:
                connection = await self._connect()
                for channel, callback in list(self._callbacks.items()):
                    await connection.add_listener(channel, _delivering_to(callback))
            except Exception as error:  # the store is down: keep trying until it is back
                logger.debug("store: listener reconnect failed: {}", error)
                if connection is not None:
                    connection.terminate()
                wait_s = min(wait_s * 2, RECONNECT_MAX_S)
                continue
            self._connection, self._reconnecting = connection, None
            logger.info("store: listening to {} again", shown(self._url))
            return


def _delivering_to(callback: OnPayload) -> Callable[[Any, int, str, object], None]:
    def deliver(connection: Any, pid: int, channel: str, payload: object) -> None:
        callback(str(payload))

    return deliver
