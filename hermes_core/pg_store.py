"""The PostgreSQL store: one database that several gateway processes share.

Driver: asyncpg (pure asyncio, binary protocol, prepared statements cached per connection,
its own pool). Each store call is one SQL statement, so one round trip: a run's writes are
single statements whose CTEs keep them atomic.

**One run per session across processes.** :meth:`PostgresStore.hold` takes a connection from
the pool and, on it, the session-level advisory lock of the session (``pg_advisory_lock`` on
``hashtextextended(key)``, in ``hermes_hold_session``, which also reads the session's version
under the lock). Waiters are granted the lock in arrival order. The run's own reads and writes
go over that same connection (found through a context variable of the holding task), so a run
waiting for a lock never starves a holder of a connection. Releasing the connection to the
pool runs asyncpg's reset (``pg_advisory_unlock_all()``); a connection that dies takes its
lock with it: a ``kill -9``'ed holder's socket is closed by its kernel and the server frees the
lock at once; a holder cut off by the network is noticed by the server's TCP keepalive within
:data:`KEEPALIVE_BOUND_S` seconds (and its late writes fail: its connection is gone, and the
version fence would refuse them anyway).

Durability: a write returns once PostgreSQL committed it (``synchronous_commit`` as the
server is set up: on by default, so the commit is flushed to its WAL).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core.errors import ConfigError
from hermes_core.pg_channels import Listener, OnPayload
from hermes_core.pg_rows import (
    BEGIN_RUN,
    FINISH_RUN,
    IMPORT_SESSION,
    UPSERT_SESSION,
)
from hermes_core.pg_schema import (
    SCHEMA_VERSION,
    SETTING,
    check_url,
    check_version,
    connect_error,
    migrate,
    shown,
    stored_version,
)
from hermes_core.session_rows import SESSION_COLUMNS, session_from_row, session_row
from hermes_core.store import (
    FinishedRun,
    SessionSummary,
    StaleSession,
    StoredMessage,
    bounded_history,
    prune_retained,
)
from hermes_core.types import Session

if TYPE_CHECKING:
    import asyncpg

    from hermes_core.pg_schema import Db

#: Server-side TCP keepalive of every connection: a peer silent for ``idle`` seconds is probed
#: every ``interval`` seconds, and dropped after ``count`` unanswered probes; data unacknowledged
#: for ``tcp_user_timeout`` ms drops it too. The bound for a holder cut off by the network:
KEEPALIVE = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "25000",
}
KEEPALIVE_BOUND_S = 10 + 5 * 3
#: How long connecting may take before the store reports the database unreachable.
CONNECT_TIMEOUT_S = 10.0

#: The connection holding a session's run lock, for the task that holds it.
_held: contextvars.ContextVar[tuple[PostgresStore, str, Db] | None] = contextvars.ContextVar(
    "hermes_core_pg_held", default=None
)


class NoStore(ConfigError):
    """Opened without migrating, the database holds no store at all (no schema)."""


class PostgresStore:
    """A :class:`~hermes_core.store.Store` in a PostgreSQL database.

    Args:
        url: ``postgresql://user[:password]@host[:port]/db``.
        password: Used when the URL has none (``store.password_env``).
        pool_size: Connections of this process: how many sessions it runs (or waits for) at once.
        retention_days: At :meth:`open`, delete sessions idle for longer (0: keep all).
        migrate: Bring the schema up to date at :meth:`open` (the gateway, ``store migrate``);
            without, a schema that is not the current one is refused (``sessions`` commands).
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        pool_size: int = 50,
        retention_days: float = 0,
        migrate: bool = True,
    ) -> None:
        check_url(url)
        self.url = url
        self.password = password
        self.pool_size = pool_size
        self.retention_days = retention_days
        self.migrate = migrate
        self._pool: asyncpg.Pool | None = None
        self._listener = Listener(url, password, KEEPALIVE, CONNECT_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"<PostgresStore {shown(self.url)}>"

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (the pool), migrate or check the schema, then prune by ``retention_days``.

        Raises:
            ConfigError: the database cannot be reached, refuses the login, or has a schema
                this version cannot use; one line, the password never in it.
        """
        if self._pool is not None:
            return
        try:
            import asyncpg  # here: only a PostgreSQL deployment pays for importing the driver
        except ImportError:
            raise ConfigError(
                SETTING, "the PostgreSQL store needs asyncpg: pip install 'hermes-core[postgres]'"
            ) from None

        try:
            pool = await asyncpg.create_pool(
                self.url,
                password=self.password,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT_S,
                server_settings=KEEPALIVE,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise connect_error(self.url, error) from None
        try:
            async with pool.acquire() as db:
                if self.migrate:
                    before, now = await migrate(db, self.url)
                    if before != now:
                        logger.info("store {}: migrated to schema version {}", shown(self.url), now)
                else:
                    self._check_current(await stored_version(db))
        except asyncpg.PostgresError as error:
            await pool.close()
            raise connect_error(self.url, error) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        logger.debug("store {} open (schema version {})", shown(self.url), SCHEMA_VERSION)
        if self.migrate:
            await prune_retained(self, self.retention_days)

    def _check_current(self, version: int) -> None:
        check_version(self.url, version)
        if version == 0:
            raise NoStore(SETTING, f"{shown(self.url)} holds no hermes-core store yet")
        if version != SCHEMA_VERSION:
            raise ConfigError(
                SETTING,
                f"{shown(self.url)} has schema version {version}, not {SCHEMA_VERSION}; run "
                "hermes-core store migrate (or start hermes-core run on it once)",
            )

    async def close(self) -> None:
        await self._listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def schema_version(self) -> int:
        """The schema version the database holds (for ``doctor``)."""
        async with self._connection("") as db:
            return await stored_version(db)

    @contextlib.asynccontextmanager
    async def importing(
        self,
    ) -> AsyncIterator[Callable[[Session, list[StoredMessage]], Awaitable[None]]]:
        """``put(session, lines)`` stores a session and its transcript as they are (versions,
        statuses, times), all in one transaction: a copy that fails stores nothing.

        Raises:
            ConfigError: the store already holds sessions (copying refuses to merge).
        """
        async with self._connection("") as db, db.transaction():
            await db.execute("LOCK TABLE hermes_sessions IN EXCLUSIVE MODE")
            held = await db.fetchval("SELECT count(*) FROM hermes_sessions")
            if held:
                raise ConfigError(
                    "--to",
                    f"{shown(self.url)} already holds {held} session(s); copying refuses to "
                    "merge stores: copy into an empty database",
                )

            async def put(session: Session, lines: list[StoredMessage]) -> None:
                await db.execute(IMPORT_SESSION, *session_row(session)[:-1], session.version)
                await db.executemany(
                    "INSERT INTO hermes_messages (session_key, conversation, run_id, message, "
                    "model, status, created_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)",
                    [
                        (
                            line.session_key,
                            line.conversation,
                            line.run_id,
                            json.dumps(line.message),
                            line.model,
                            line.status,
                            line.created_at,
                        )
                        for line in lines
                    ],
                )

            yield put

    async def notify(self, channel: str, payload: str) -> None:
        """Send ``payload`` to every connection listening on ``channel`` (other processes')."""
        async with self._connection("") as db:
            await db.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def listen(self, channel: str, callback: OnPayload) -> None:
        """Call ``callback(payload)`` for each notification on ``channel`` until :meth:`close`."""
        await self._listener.listen(channel, callback)

    # --- connections and the run lock ----------------------------------------------------

    def _connected(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self, key: str) -> AsyncIterator[Db]:
        """The connection holding ``key``'s run lock, in the task holding it; else one from
        the pool."""
        held = _held.get()
        if held is not None and held[0] is self and held[1] == key:
            yield held[2]
            return
        async with self._connected().acquire() as db:
            yield db

    def hold(self, key: str) -> AbstractAsyncContextManager[int | None]:
        return self._hold(key)

    @contextlib.asynccontextmanager
    async def _hold(self, key: str) -> AsyncIterator[int | None]:
        # Leaving the block releases the connection; the pool's reset unlocks it (a cancelled
        # wait too: a lock granted as the cancel arrived is unlocked there).
        async with self._connected().acquire() as db:
            version = await db.fetchval("SELECT hermes_hold_session($1)", key)
            token = _held.set((self, key, db))
            try:
                yield version
            finally:
                _held.reset(token)

    # --- sessions ------------------------------------------------------------------------

    async def load_session(self, key: str) -> Session | None:
        async with self._connection(key) as db:
            row = await db.fetchrow(
                f"SELECT {SESSION_COLUMNS} FROM hermes_sessions WHERE key = $1", key
            )
        return None if row is None else session_from_row(key, row)

    async def _stale(self, db: Db, session: Session) -> StaleSession:
        stored = await db.fetchval(
            "SELECT version FROM hermes_sessions WHERE key = $1", session.key
        )
        return StaleSession(session.key, session.version, stored)

    async def save_session(self, session: Session) -> None:
        args = session_row(session)
        async with self._connection(session.key) as db:
            if await db.fetchval(UPSERT_SESSION, *args) is None:
                raise await self._stale(db, session)
        session.version = args[-1]

    async def sessions(self, platform: str | None = None) -> list[SessionSummary]:
        async with self._connection("") as db:
            rows = await db.fetch(
                """
                SELECT s.key, s.platform, s.user_id, s.model, s.conversation, s.created_at,
                       s.last_active, count(m.id),
                       count(m.id) FILTER (WHERE m.message->>'role' = 'user'
                                           AND m.status <> 'answered')
                FROM hermes_sessions AS s LEFT JOIN hermes_messages AS m ON m.session_key = s.key
                WHERE $1::text IS NULL OR s.platform = $1
                GROUP BY s.key
                ORDER BY s.last_active DESC
                """,
                platform,
            )
        return [SessionSummary(*row) for row in rows]

    async def prune(self, before: float) -> int:
        async with self._connection("") as db:
            status = await db.execute("DELETE FROM hermes_sessions WHERE last_active < $1", before)
        return int(status.split()[-1])  # "DELETE <n>"; messages go with ON DELETE CASCADE

    # --- transcripts ---------------------------------------------------------------------

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        # The session row goes in with the message: a crash mid-run must not orphan it.
        args = session_row(session)
        async with self._connection(session.key) as db:
            inserted = await db.fetchval(
                BEGIN_RUN, *args, run_id, json.dumps(user_message), time.time()
            )
            if inserted is None:
                raise await self._stale(db, session)
        session.version = args[-1]

    async def finish_run(self, session: Session, run: FinishedRun) -> None:
        lines = [json.dumps(message) for message in run.added or []]
        async with self._connection(session.key) as db:
            fence = await db.fetchrow(
                FINISH_RUN,
                session.key,
                session.version,
                run.status,
                run.model,
                run.run_id,
                session.conversation,
                time.time(),
                lines,
            )
        if fence is None or not fence[0]:  # the statement always returns its one row
            raise StaleSession(session.key, session.version, fence[1] if fence else None)

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        async with self._connection(session.key) as db:
            rows = await db.fetch(
                "SELECT message FROM hermes_messages "
                "WHERE session_key = $1 AND conversation = $2 AND status = 'answered' "
                "ORDER BY id DESC LIMIT $3",
                session.key,
                session.conversation,
                max(limit, 0),
            )
        return bounded_history([json.loads(row[0]) for row in reversed(rows)], limit)

    async def transcript(self, key: str) -> list[StoredMessage]:
        async with self._connection(key) as db:
            rows = await db.fetch(
                "SELECT conversation, run_id, message, status, created_at, model "
                "FROM hermes_messages WHERE session_key = $1 ORDER BY id",
                key,
            )
        return [
            StoredMessage(key, conversation, run_id, json.loads(message), status, created, model)
            for conversation, run_id, message, status, created, model in rows
        ]
