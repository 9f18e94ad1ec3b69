"""LISTEN/NOTIFY for the PostgreSQL store: how gateways on one database tell each other news.

A notification is sent over any pooled connection (``pg_notify``); listening needs a connection
of its own that is never handed to a run, so :class:`Listener` opens one on first use and keeps
it until the store closes. asyncpg delivers each payload to the callback on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hermes_core.pg_schema import connect_error

if TYPE_CHECKING:
    import asyncpg

#: Called with the payload of each notification on a channel listened to.
OnPayload = Callable[[str], None]


class Listener:
    """The one connection a store listens on, opened lazily by :meth:`listen`."""

    def __init__(
        self, url: str, password: str | None, settings: dict[str, str], timeout_s: float
    ) -> None:
        self._url = url
        self._password = password
        self._settings = settings
        self._timeout_s = timeout_s
        self._connection: asyncpg.Connection | None = None

    async def listen(self, channel: str, callback: OnPayload) -> None:
        if self._connection is None:
            import asyncpg  # here: the store imported it already when it opened

            try:
                self._connection = await asyncpg.connect(
                    self._url,
                    password=self._password,
                    timeout=self._timeout_s,
                    server_settings=self._settings,
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                raise connect_error(self._url, error) from None

        def deliver(connection: Any, pid: int, channel: str, payload: object) -> None:
            callback(str(payload))

        await self._connection.add_listener(channel, deliver)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
