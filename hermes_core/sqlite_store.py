"""The SQLite store: transcripts that survive eviction, restart and crash.

Durability: WAL journal with ``synchronous=FULL``, and a write call returns only once its
transaction is committed and the WAL fsynced. The gateway sends a reply only after the run's
``finish_run`` returned, so a reply the user has seen is on disk even if the power goes out
next. ``NORMAL`` would survive a killed process but could lose the last commits on an OS crash
or power cut: exactly the acknowledged turns that must not be lost.

Group commit pays for that fsync: writes are queued, and one writer task commits everything
queued so far as one transaction (each write in its own savepoint, so one failing write fails
alone). A lone conversation pays one fsync per write; a hundred concurrent ones share them.

Threading: one connection, used only by one dedicated thread; every read and every batch of
writes is one job on it, so the event loop never blocks on disk and a reader sees only
committed data. Writes of one session are awaited one after another, so they are stored in
order.

Schema: versioned by ``PRAGMA user_version`` and marked as ours by ``PRAGMA application_id``;
:data:`MIGRATIONS` are applied in order at :meth:`SQLiteStore.open`. Before anything is created
or written, the file is checked through a read-only connection: a file that is not a SQLite
database, belongs to another application, or comes from a newer hermes-core raises
:class:`~hermes_core.errors.ConfigError` and stays untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from hermes_core.errors import ConfigError
from hermes_core.store import (
    SECONDS_PER_DAY,
    RunStatus,
    SessionSummary,
    StoredMessage,
    bounded_history,
)
from hermes_core.types import Session

T = TypeVar("T")
#: A unit of work on the connection, run on the store thread.
Operation = Callable[[sqlite3.Connection], T]

SETTING = "store.path"
#: ``PRAGMA application_id`` of a hermes-core store ("HRMS").
APPLICATION_ID = 0x48524D53
#: How long a write waits for another process (``sessions prune``) holding the write lock.
BUSY_TIMEOUT_MS = 10_000

#: Schema migrations: ``MIGRATIONS[n]`` takes a store from version ``n`` to ``n + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE sessions (
            key          TEXT PRIMARY KEY,
            platform     TEXT NOT NULL,
            user_id      TEXT,
            model        TEXT,                       -- the /model override, or NULL
            data         TEXT NOT NULL DEFAULT '{}', -- plugin state (JSON): circuit breaker, ...
            conversation INTEGER NOT NULL DEFAULT 0, -- bumped by /reset and /new
            created_at   REAL NOT NULL,
            last_active  REAL NOT NULL
        )
        """,
        """
        CREATE TABLE messages (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            session_key  TEXT NOT NULL REFERENCES sessions (key),
            conversation INTEGER NOT NULL,
            run_id       TEXT NOT NULL,
            role         TEXT NOT NULL,
            content      TEXT,                       -- JSON
            tool_calls   TEXT,                       -- JSON, assistant messages that call tools
            tool_call_id TEXT,                       -- tool results
            extra        TEXT,                       -- JSON, any other message keys
            model        TEXT,                       -- model that answered the run
            status       TEXT NOT NULL CHECK (status IN ('pending', 'answered', 'failed')),
            created_at   REAL NOT NULL
        )
        """,
        "CREATE INDEX messages_by_session ON messages (session_key, conversation, id)",
        "CREATE INDEX messages_by_run ON messages (run_id)",
        "CREATE INDEX sessions_by_activity ON sessions (last_active)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_MESSAGE_COLUMNS = "role, content, tool_calls, tool_call_id, extra"
_KNOWN_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id"})
_UPSERT_SESSION = """
    INSERT INTO sessions (key, platform, user_id, model, data, conversation, created_at,
                          last_active)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET
        platform = excluded.platform, user_id = excluded.user_id, model = excluded.model,
        data = excluded.data, conversation = excluded.conversation,
        last_active = excluded.last_active
"""
_INSERT_MESSAGE = f"""
    INSERT INTO messages (session_key, conversation, run_id, {_MESSAGE_COLUMNS}, model, status,
                          created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def check_store_file(path: Path) -> int:
    """Look at ``path`` without creating or changing anything; return its schema version.

    0 means a new store: the file is missing or an empty database.

    Raises:
        ConfigError: ``path`` is a directory, not a SQLite database, another application's
            database, or a store from a newer hermes-core.
    """
    if not path.exists():
        return 0
    if not path.is_file():
        raise ConfigError(SETTING, f"{path} is not a file")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            objects = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.Error as error:
        raise ConfigError(
            SETTING,
            f"{path} is not a SQLite database ({error}); "
            "move it away or point store.path at another file",
        ) from None
    if application_id not in (0, APPLICATION_ID) or (application_id == 0 and objects):
        raise ConfigError(
            SETTING,
            f"{path} is a SQLite database of another application; point store.path at another file",
        )
    _check_version(path, version)
    return version


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            SETTING,
            f"{path} was written by a newer hermes-core (schema version {version}; this "
            f"version reads up to {SCHEMA_VERSION}); upgrade hermes-core or use another file",
        )


def _encode(message: dict[str, Any]) -> tuple[str, str, str | None, str | None, str | None]:
    extra = {k: v for k, v in message.items() if k not in _KNOWN_KEYS}
    tool_calls = message.get("tool_calls")
    return (
        str(message["role"]),
        json.dumps(message.get("content")),
        json.dumps(tool_calls) if tool_calls is not None else None,
        message.get("tool_call_id"),
        json.dumps(extra) if extra else None,
    )


def _decode(row: Iterable[Any]) -> dict[str, Any]:
    role, content, tool_calls, tool_call_id, extra = row
    message: dict[str, Any] = {"role": role, "content": json.loads(content)}
    if tool_calls is not None:
        message["tool_calls"] = json.loads(tool_calls)
    if tool_call_id is not None:
        message["tool_call_id"] = tool_call_id
    if extra is not None:
        message.update(json.loads(extra))
    return message


def _message_row(
    session: Session, run_id: str, message: dict[str, Any], model: str | None, status: RunStatus
) -> tuple[Any, ...]:
    return (
        session.key,
        session.conversation,
        run_id,
        *_encode(message),
        model,
        status,
        time.time(),
    )


def _session_row(session: Session) -> tuple[Any, ...]:
    # default=str: plugin state that is not JSON is stored as text rather than failing a run.
    return (
        session.key,
        session.platform,
        session.user_id,
        session.model,
        json.dumps(session.data, default=str),
        session.conversation,
        session.created_at,
        session.last_active,
    )


class SQLiteStore:
    """A :class:`~hermes_core.store.Store` in one SQLite file.

    Args:
        path: The database file; created (with its directory) on first :meth:`open`.
        retention_days: At :meth:`open`, delete sessions idle for longer (0: keep all).
    """

    def __init__(self, path: Path, *, retention_days: float = 0) -> None:
        self.path = path.expanduser().absolute()
        self.retention_days = retention_days
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._queue: list[tuple[Operation[Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Check the file, create or migrate it, then prune by ``retention_days``."""
        if self._db is not None:
            return
        await asyncio.to_thread(check_store_file, self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                SETTING, f"cannot create the directory {self.path.parent}: {error.strerror}"
            ) from None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hermes-core store")
        try:
            self._db = await self._on_thread(self._connect)
        except sqlite3.Error as error:  # locked past the busy timeout, read-only, disk full...
            raise ConfigError(SETTING, f"cannot open {self.path}: {error}") from None
        finally:
            if self._db is None:
                self._thread.shutdown()
                self._thread = None
        self._closing = False
        self._wake = asyncio.Event()  # bound to this loop: a store may be reopened in another
        self._writer = asyncio.create_task(self._write_loop(), name=f"hermes-core {self!r}")
        logger.debug("store {} open (schema version {})", self.path, SCHEMA_VERSION)
        if self.retention_days > 0:
            pruned = await self.prune(time.time() - self.retention_days * SECONDS_PER_DAY)
            if pruned:
                logger.info(
                    "store: pruned {} session(s) idle for over {} day(s)",
                    pruned,
                    self.retention_days,
                )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("store {}: WAL unavailable, journal mode is {}", self.path, mode)
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE: two processes starting at once migrate one after the other.
        with _transaction(db):
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            _check_version(self.path, version)
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    db.execute(statement)
                logger.info("store {}: migrated to schema version {}", self.path, number + 1)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    async def close(self) -> None:
        """Commit what is queued, then close (the WAL is checkpointed into the main file)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._closing = True
            self._wake.set()
            await asyncio.wait([writer])  # its own failure was reported to each caller
        db, thread = self._db, self._thread
        self._db = self._thread = None
        if db is not None and thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, db.close)
        if thread is not None:
            thread.shutdown()

    # --- the store thread ----------------------------------------------------------------

    async def _on_thread(self, operation: Callable[[], T]) -> T:
        if self._thread is None:
            raise RuntimeError(f"{self!r} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, operation)

    async def _read(self, operation: Operation[T]) -> T:
        db = self._connection()
        return await self._on_thread(lambda: operation(db))

    async def _write(self, operation: Operation[T]) -> T:
        """Queue ``operation`` for the next group commit; return its result once committed."""
        if self._writer is None or self._closing:
            raise RuntimeError(f"{self!r} is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((operation, future))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[tuple[Operation[Any], asyncio.Future[Any]]]) -> None:
        db = self._connection()
        operations = [operation for operation, _ in batch]
        try:
            outcomes = await self._on_thread(lambda: _apply(db, operations))
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # the transaction failed as a whole: nothing is stored
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            logger.error("store {}: commit failed: {}", self.path, error)
            return
        for (_, future), (value, failure) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled; the write is stored all the same
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(value)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._db

    # --- sessions ------------------------------------------------------------------------

    async def load_session(self, key: str) -> Session | None:
        def load(db: sqlite3.Connection) -> Any:
            return db.execute(
                "SELECT platform, user_id, model, data, conversation, created_at, last_active "
                "FROM sessions WHERE key = ?",
                (key,),
            ).fetchone()

        row = await self._read(load)
        if row is None:
            return None
        platform, user_id, model, data, conversation, created_at, last_active = row
        return Session(
            key=key,
            platform=platform,
            user_id=user_id,
            model=model,
            data=json.loads(data),
            conversation=conversation,
            created_at=created_at,
            last_active=last_active,
        )

    async def save_session(self, session: Session) -> None:
        row = _session_row(session)  # now: the session may change while the write is queued
        await self._write(lambda db: db.execute(_UPSERT_SESSION, row))

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
        row = _session_row(session)
        line = _message_row(session, run_id, user_message, None, "pending")

        def insert(db: sqlite3.Connection) -> None:
            db.execute(_UPSERT_SESSION, row)
            db.execute(_INSERT_MESSAGE, line)

        await self._write(insert)

    async def finish_run(
        self,
        session: Session,
        run_id: str,
        added: list[dict[str, Any]] | None,
        model: str | None = None,
    ) -> None:
        status: RunStatus = "failed" if added is None else "answered"
        lines = [_message_row(session, run_id, m, model, status) for m in added or []]

        def update(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE messages SET status = ?, model = ? WHERE run_id = ?",
                (status, model, run_id),
            )
            db.executemany(_INSERT_MESSAGE, lines)

        await self._write(update)

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        def select(db: sqlite3.Connection) -> list[Any]:
            return db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages "
                "WHERE session_key = ? AND conversation = ? AND status = 'answered' "
                "ORDER BY id DESC LIMIT ?",
                (session.key, session.conversation, max(limit, 0)),
            ).fetchall()

        rows = await self._read(select)
        return bounded_history([_decode(row) for row in reversed(rows)], limit)

    async def transcript(self, key: str) -> list[StoredMessage]:
        def select(db: sqlite3.Connection) -> list[Any]:
            return db.execute(
                f"SELECT conversation, run_id, status, created_at, model, {_MESSAGE_COLUMNS} "
                "FROM messages WHERE session_key = ? ORDER BY id",
                (key,),
            ).fetchall()

        return [
            StoredMessage(key, conversation, run_id, _decode(rest), status, created_at, model)
            for conversation, run_id, status, created_at, model, *rest in await self._read(select)
        ]


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _apply(
    db: sqlite3.Connection, operations: list[Operation[Any]]
) -> list[tuple[Any, Exception | None]]:
    """Run ``operations`` in one transaction, each in a savepoint: one failing write is
    rolled back alone and reported to its caller; the others commit."""
    outcomes: list[tuple[Any, Exception | None]] = []
    with _transaction(db):
        for operation in operations:
            db.execute("SAVEPOINT operation")
            try:
                outcomes.append((operation(db), None))
            except Exception as error:
                db.execute("ROLLBACK TO operation")
                outcomes.append((None, error))
            db.execute("RELEASE operation")
    return outcomes
