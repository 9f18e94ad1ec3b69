"""The SQLite store: transcripts that survive eviction, restart and crash.

Durability: WAL journal with ``synchronous=FULL``, and a write call returns only once its
transaction is committed and the WAL fsynced. The gateway sends a reply only after the run's
``finish_run`` returned, so a reply the user has seen is on disk even if the power goes out
next. ``NORMAL`` would survive a killed process but could lose the last commits on an OS crash
or power cut: exactly the acknowledged turns that must not be lost. Writes are group-committed
on the store's own thread (:mod:`hermes_core.sqlite_writer`); writes of one session are awaited
one after another, so they are stored in order.

One store file, one gateway: the gateway's store (:attr:`Access.OWNER`) holds an exclusive
lock on ``<file>.lock`` beside the database (:mod:`hermes_core.pidlock`), so a second gateway on
the same file refuses to start instead of silently diverging from the first. ``sessions``
commands read (:attr:`Access.READ`) or prune (:attr:`Access.SHARED`) beside it without the lock.

Opening checks the file first (:mod:`hermes_core.sqlite_schema`: not a database, another
application's, a newer schema, read-only, damaged), each problem one
:class:`~hermes_core.errors.ConfigError` line, and leaves a file it refuses untouched.

Errors once open: every write (``begin_run``, ``finish_run``, ``save_session``, ``prune``)
raises ``sqlite3.Error`` when its commit fails (``sqlite3.OperationalError`` for a full disk, an
I/O error or a lock held past the busy timeout), and then nothing of it is stored; it is never
swallowed. ``RuntimeError`` means the store is closed (or opened read-only).
"""

from __future__ import annotations

import asyncio
import enum
import os
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from loguru import logger

from hermes_core.errors import ConfigError
from hermes_core.pidlock import LockHeld, PidLock
from hermes_core.session_rows import SESSION_COLUMNS, session_from_row, session_row
from hermes_core.sqlite_rows import (
    INSERT_MESSAGE,
    MESSAGE_COLUMNS,
    check_version,
    decode,
    message_row,
    write_session,
)
from hermes_core.sqlite_schema import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SETTING,
    check_integrity,
    check_store_file,
    connect_read_only,
    migrate,
    store_file_error,
)
from hermes_core.sqlite_writer import Operation, StoreThread, T
from hermes_core.store import (
    FinishedRun,
    SessionSummary,
    StoredMessage,
    bounded_history,
    prune_retained,
    unshared_hold,
)
from hermes_core.types import Session

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "Access", "SQLiteStore", "check_store_file"]

#: How long a write waits for another process (``sessions prune``) holding the write lock.
BUSY_TIMEOUT_MS = 10_000


class Access(enum.Enum):
    """How a :class:`SQLiteStore` uses its file."""

    #: The gateway: the only owner (holds the lock file), creates and migrates the store.
    OWNER = "owner"
    #: Maintenance writes beside an owner (``sessions prune``); SQLite serializes them.
    SHARED = "shared"
    #: Reading only (``sessions list``/``show``): creates and changes nothing.
    READ = "read"


class SQLiteStore:
    """A :class:`~hermes_core.store.Store` in one SQLite file.

    Args:
        path: The database file; created (with its directory) on first :meth:`open`.
        retention_days: At :meth:`open`, delete sessions idle for longer (0: keep all).
        access: What this store may do with the file (the gateway's by default).
    """

    def __init__(
        self, path: Path, *, retention_days: float = 0, access: Access = Access.OWNER
    ) -> None:
        self.path = path.expanduser().absolute()
        self.retention_days = retention_days
        self.access = access
        self._lock = PidLock(Path(f"{self.path}.lock"))
        self._thread = StoreThread(f"store {self.path}")

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    #: One gateway per file (the lock file): no other process writes it.
    shared = False

    def hold(self, key: str) -> AbstractAsyncContextManager[int | None]:
        return unshared_hold(key)

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Check the file, lock it (the owner), create or migrate it, then prune by
        ``retention_days``."""
        if self._thread.connected:
            return
        await asyncio.to_thread(self._prepare)
        try:
            await self._thread.start(self._connect, writable=self.access is not Access.READ)
        except sqlite3.Error as error:  # locked past the busy timeout, read-only, disk full...
            self._lock.release()
            raise store_file_error(self.path, error) from None
        except BaseException:
            self._lock.release()
            raise
        logger.debug("store {} open (schema version {})", self.path, SCHEMA_VERSION)
        if self.access is not Access.READ:
            await prune_retained(self, self.retention_days)

    def _prepare(self) -> None:
        """Everything before the connection: nothing is created for a file that is refused."""
        check_store_file(self.path)
        if self.access is Access.READ:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                SETTING, f"cannot create the directory {self.path.parent}: {error.strerror}"
            ) from None
        if self.access is not Access.OWNER:
            return
        try:
            self._lock.acquire()
        except LockHeld as held:
            holder = "this process" if held.pid == os.getpid() else "another process"
            pid = held.pid if held.pid is not None else "unknown"
            raise ConfigError(
                SETTING,
                f"{self.path} is in use by {holder} (pid {pid}); one store serves one gateway: "
                "stop that one, or point store.path at another file",
            ) from None
        except OSError as error:
            raise store_file_error(self.path, error) from None

    def _connect(self) -> sqlite3.Connection:
        if self.access is Access.READ:
            db = connect_read_only(self.path)
        else:
            db = sqlite3.connect(self.path, isolation_level=None)
        try:
            check_integrity(db, self.path)
            if self.access is Access.READ:
                _check_readable(db, self.path)
                return db
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("store {}: WAL unavailable, journal mode is {}", self.path, mode)
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        """Commit what is queued, close (the WAL is checkpointed into the main file), and
        release the lock."""
        try:
            await self._thread.close()
        finally:
            self._lock.release()

    async def _read(self, operation: Operation[T]) -> T:
        return await self._thread.read(operation)

    async def _write(self, operation: Operation[T]) -> T:
        return await self._thread.write(operation)

    # --- sessions ------------------------------------------------------------------------

    async def load_session(self, key: str) -> Session | None:
        def load(db: sqlite3.Connection) -> Any:
            return db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE key = ?", (key,)
            ).fetchone()

        row = await self._read(load)
        return None if row is None else session_from_row(key, row)

    async def save_session(self, session: Session) -> None:
        row = session_row(session)  # now: the session may change while the write is queued
        await self._write(lambda db: write_session(db, row))
        session.version = row[-1]

    async def sessions(self, platform: str | None = None) -> list[SessionSummary]:
        def select(db: sqlite3.Connection) -> list[Any]:
            return db.execute(
                """
                SELECT s.key, s.platform, s.user_id, s.model, s.conversation, s.created_at,
                       s.last_active, count(m.id),
                       coalesce(sum(m.role = 'user' AND m.status != 'answered'), 0)
                FROM sessions AS s LEFT JOIN messages AS m ON m.session_key = s.key
                WHERE ?1 IS NULL OR s.platform = ?1
                GROUP BY s.key
                ORDER BY s.last_active DESC
                """,
                (platform,),
            ).fetchall()

        return [SessionSummary(*row) for row in await self._read(select)]

    async def prune(self, before: float) -> int:
        def delete(db: sqlite3.Connection) -> int:
            db.execute(
                "DELETE FROM messages WHERE session_key IN "
                "(SELECT key FROM sessions WHERE last_active < ?)",
                (before,),
            )
            return db.execute("DELETE FROM sessions WHERE last_active < ?", (before,)).rowcount

        return await self._write(delete)

    # --- transcripts ---------------------------------------------------------------------

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        # The session row goes in with the message: a crash mid-run must not orphan it.
        row = session_row(session)
        line = message_row(session, run_id, user_message, None, "pending")

        def insert(db: sqlite3.Connection) -> None:
            write_session(db, row)
            db.execute(INSERT_MESSAGE, line)

        await self._write(insert)
        session.version = row[-1]

    async def finish_run(self, session: Session, run: FinishedRun) -> None:
        lines = [
            message_row(session, run.run_id, m, run.model, run.status) for m in run.added or []
        ]
        version = session.version

        def update(db: sqlite3.Connection) -> None:
            check_version(db, session.key, version)
            db.execute(
                "UPDATE messages SET status = ?, model = ? WHERE run_id = ?",
                (run.status, run.model, run.run_id),
            )
            db.executemany(INSERT_MESSAGE, lines)

        await self._write(update)

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        def select(db: sqlite3.Connection) -> list[Any]:
            return db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages "
                "WHERE session_key = ? AND conversation = ? AND status = 'answered' "
                "ORDER BY id DESC LIMIT ?",
                (session.key, session.conversation, max(limit, 0)),
            ).fetchall()

        rows = await self._read(select)
        return bounded_history([decode(row) for row in reversed(rows)], limit)

    async def transcript(self, key: str) -> list[StoredMessage]:
        def select(db: sqlite3.Connection) -> list[Any]:
            return db.execute(
                f"SELECT conversation, run_id, status, created_at, model, {MESSAGE_COLUMNS} "
                "FROM messages WHERE session_key = ? ORDER BY id",
                (key,),
            ).fetchall()

        return [
            StoredMessage(key, conversation, run_id, decode(rest), status, created_at, model)
            for conversation, run_id, status, created_at, model, *rest in await self._read(select)
        ]


def _check_readable(db: sqlite3.Connection, path: Path) -> None:
    """A store opened read-only cannot migrate: its schema must be the current one."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version != SCHEMA_VERSION:
        raise ConfigError(
            SETTING,
            f"{path} has schema version {version}, not {SCHEMA_VERSION}; "
            "start hermes-core run on it once to upgrade it",
        )
