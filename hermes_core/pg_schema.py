"""What a hermes-core PostgreSQL store is: its URL, its tables, its migrations, and the one line
that says why a database cannot be used.

Tables are prefixed ``hermes_`` so the store can share a database with other applications.
The schema is versioned by the one row of ``hermes_schema_version``; :data:`MIGRATIONS` are
applied in order at start-up, in one transaction under a transaction-level advisory lock, so
processes starting together migrate one after the other and see the same schema.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hermes_core.errors import ConfigError
from hermes_core.redaction import redact_text

if TYPE_CHECKING:  # asyncpg is imported only by the store that uses it (start-up time)
    from asyncpg import Record
    from asyncpg.pool import PoolConnectionProxy

    #: A connection of the store's pool.
    Db = PoolConnectionProxy[Record]

SETTING = "store.url"
SCHEMES = ("postgresql", "postgres")
#: Key of the advisory lock that serializes migrations (``"HRMS"``, as the SQLite store's id).
MIGRATION_LOCK = 0x48524D53

#: ``MIGRATIONS[n]`` takes a store from version ``n`` to ``n + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE hermes_sessions (
            key          text PRIMARY KEY,
            platform     text NOT NULL,
            user_id      text,
            model        text,                       -- the /model override, or NULL
            data         jsonb NOT NULL DEFAULT '{}', -- plugin state: circuit breaker, ...
            conversation integer NOT NULL DEFAULT 0, -- bumped by /reset and /new
            created_at   double precision NOT NULL,
            last_active  double precision NOT NULL,
            version      bigint NOT NULL DEFAULT 0   -- bumped by every write: fencing token
        )
        """,
        """
        CREATE TABLE hermes_messages (
            id           bigserial PRIMARY KEY,
            session_key  text NOT NULL REFERENCES hermes_sessions (key) ON DELETE CASCADE,
            conversation integer NOT NULL,
            run_id       text NOT NULL,
            message      jsonb NOT NULL,
            model        text,
            status       text NOT NULL CHECK (status IN ('pending', 'answered', 'failed')),
            created_at   double precision NOT NULL
        )
        """,
        "CREATE INDEX hermes_messages_by_session "
        "ON hermes_messages (session_key, conversation, id)",
        "CREATE INDEX hermes_messages_by_run ON hermes_messages (run_id)",
        "CREATE INDEX hermes_sessions_by_activity ON hermes_sessions (last_active)",
        # The run lock and the version read under it, in one round trip. A separate SELECT in
        # a volatile function takes a new snapshot once the lock is granted, so it sees the
        # last holder's commits (one statement would read with the snapshot of before the wait).
        """
        CREATE FUNCTION hermes_hold_session(session_key text) RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE stored bigint;
        BEGIN
            PERFORM pg_advisory_lock(hashtextextended(session_key, 0));
            SELECT version INTO stored FROM hermes_sessions WHERE key = session_key;
            RETURN stored;
        END $$
        """,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def shown(url: str) -> str:
    """``url`` as it may be printed: userinfo (the password) masked."""
    return redact_text(url)


def check_url(url: str) -> None:
    """Refuse a ``store.url`` that is not ``postgresql://[user[:password]@]host[:port]/db``.

    Raises:
        ConfigError: one line naming what is wrong, the password never in it.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as error:
        raise ConfigError(SETTING, f"{shown(url)} is not a valid URL ({error})") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            SETTING,
            f"{shown(url)} is not a PostgreSQL URL; expected postgresql://user@host:port/db",
        )
    if not parts.hostname:
        raise ConfigError(SETTING, f"{shown(url)} names no host")
    if not parts.path.strip("/"):
        raise ConfigError(SETTING, f"{shown(url)} names no database (…/dbname at the end)")


def connect_error(url: str, error: BaseException) -> ConfigError:
    """The one line that says why the database at ``url`` cannot be reached or used."""
    if isinstance(error, socket.gaierror):
        reason = f"unknown host ({error.strerror})"
    elif isinstance(error, TimeoutError):
        reason = "timed out"
    elif isinstance(error, OSError):  # asyncio words it "Connect call failed (...)"
        reason = os.strerror(error.errno) if error.errno else str(error)
    else:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ConfigError(SETTING, f"cannot connect to {shown(url)}: {redact_text(reason)}")


async def stored_version(db: Db) -> int:
    """The database's schema version; 0 when it holds no hermes-core store yet."""
    exists = await db.fetchval("SELECT to_regclass('hermes_schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await db.fetchval("SELECT version FROM hermes_schema_version"))


def check_version(url: str, version: int) -> None:
    """Refuse a store from a newer hermes-core (its schema is unknown here)."""
    if version > SCHEMA_VERSION:
        raise ConfigError(
            SETTING,
            f"{shown(url)} was written by a newer hermes-core (schema version {version}; this "
            f"version reads up to {SCHEMA_VERSION}); upgrade hermes-core",
        )


async def migrate(db: Db, url: str) -> tuple[int, int]:
    """Bring the store to :data:`SCHEMA_VERSION`; returns (version before, version now)."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS hermes_schema_version (version integer NOT NULL)"
        )
        before = await db.fetchval("SELECT version FROM hermes_schema_version")
        if before is None:
            await db.execute("INSERT INTO hermes_schema_version VALUES (0)")
            before = 0
        check_version(url, before)
        for number in range(before, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                await db.execute(statement)
        if before < SCHEMA_VERSION:
            await db.execute("UPDATE hermes_schema_version SET version = $1", SCHEMA_VERSION)
    return int(before), SCHEMA_VERSION
