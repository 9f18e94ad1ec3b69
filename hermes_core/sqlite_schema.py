"""What a hermes-core SQLite store file is: its schema, its migrations, and the checks at open.

The schema is versioned by ``PRAGMA user_version`` and marked as ours by ``PRAGMA
application_id``; :data:`MIGRATIONS` are applied in order. Before anything is created or
written, the file is looked at through a read-only connection. Every problem becomes one
:class:`~hermes_core.errors.ConfigError` line saying what is wrong with the file, so that only a
file that really is not a database is called one: a good store on a read-only file system is
reported as read-only, a damaged one as damaged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from pathlib import Path

from loguru import logger

from hermes_core.errors import ConfigError
from hermes_core.sqlite_writer import transaction

SETTING = "store.path"
#: ``PRAGMA application_id`` of a hermes-core store ("HRMS").
APPLICATION_ID = 0x48524D53

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
    # The version every write of the row bumps (see hermes_core.store): the fencing token.
    ("ALTER TABLE sessions ADD COLUMN version INTEGER NOT NULL DEFAULT 0",),
)
SCHEMA_VERSION = len(MIGRATIONS)
#: How long the integrity check at open may take; a store too large for it is checked in part.
QUICK_CHECK_BUDGET_S = 1.0


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can only read ``path`` (an existing file), on any file system.

    Raises:
        sqlite3.Error: the file cannot be read as a database (see :func:`store_file_error`).
    """
    try:
        return _probed(f"{path.as_uri()}?mode=ro")
    except sqlite3.OperationalError:
        if not (_read_only_file_system(path) and not Path(f"{path}-wal").exists()):
            raise
    # A WAL reader needs a -shm file that a read-only file system cannot hold. With no -wal
    # file the main file has every commit, and nothing can change it: read it as immutable.
    return _probed(f"{path.as_uri()}?immutable=1")


def _probed(uri: str) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opening is lazy
    except BaseException:
        db.close()
        raise
    return db


def check_store_file(path: Path) -> int:
    """Look at ``path`` without creating or changing anything; return its schema version.

    0 means a new store: the file is missing or an empty database.

    Raises:
        ConfigError: ``path`` is a directory, not a SQLite database, another application's
            database, damaged, unreadable, or a store from a newer hermes-core.
    """
    if not path.exists():
        return 0
    if not path.is_file():
        raise ConfigError(SETTING, f"{path} is not a file")
    try:
        with contextlib.closing(connect_read_only(path)) as db:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            objects = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.Error as error:
        raise store_file_error(path, error) from None
    if application_id not in (0, APPLICATION_ID) or (application_id == 0 and objects):
        raise ConfigError(
            SETTING,
            f"{path} is a SQLite database of another application; point store.path at another file",
        )
    check_version(path, version)
    return version


def check_version(path: Path, version: int) -> None:
    """Refuse a store from a newer hermes-core (its schema is unknown here)."""
    if version > SCHEMA_VERSION:
        raise ConfigError(
            SETTING,
            f"{path} was written by a newer hermes-core (schema version {version}; this "
            f"version reads up to {SCHEMA_VERSION}); upgrade hermes-core or use another file",
        )


def check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check`` (every page read once, without the index cross-checks of the
    full ``integrity_check`` that ``hermes-core doctor`` runs), stopping at the first problem
    or after :data:`QUICK_CHECK_BUDGET_S`, whichever comes first.

    Its cost grows with the file: on a 2-core machine a 10 MB store takes about 40 ms from
    the page cache (up to 150 ms with the cores busy) and about 0.6 s from a cold disk; so a
    larger store is checked only as far as the budget goes, and a warning says so.

    Raises:
        ConfigError: the file is damaged.
        sqlite3.Error: the check itself could not run (see :func:`store_file_error`).
    """
    deadline = time.monotonic() + QUICK_CHECK_BUDGET_S
    db.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)  # nonzero: stop
    try:
        verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.OperationalError as error:
        if getattr(error, "sqlite_errorname", None) != "SQLITE_INTERRUPT":
            raise
        logger.warning(
            "store {}: the integrity check at open stopped after {} s (the file has {} MB); "
            "hermes-core doctor runs the full check",
            path,
            QUICK_CHECK_BUDGET_S,
            path.stat().st_size // 1_000_000,
        )
        return
    finally:
        db.set_progress_handler(None, 0)
    if verdict != "ok":
        raise _damaged(path, " ".join(str(verdict).split()))


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the store to :data:`SCHEMA_VERSION`, in one transaction."""
    # BEGIN IMMEDIATE: two processes starting at once migrate one after the other.
    with transaction(db):
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        check_version(path, version)
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                db.execute(statement)
            logger.info("store {}: migrated to schema version {}", path, number + 1)
        if version < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def store_file_error(path: Path, error: sqlite3.Error | OSError) -> ConfigError:
    """The one line that says what is wrong with the store file ``path``, from the error
    SQLite (or the file system) gave when opening, checking or writing it."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorname", None) or ""
        if code == "SQLITE_NOTADB":
            return ConfigError(
                SETTING,
                f"{path} is not a SQLite database ({error}); "
                "move it away or point store.path at another file",
            )
        if code.startswith("SQLITE_CORRUPT"):
            return _damaged(path, str(error))
        reason = _read_only_reason(path) or (
            str(error) if code.startswith("SQLITE_READONLY") else None
        )
    else:
        denied = error.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        reason = _read_only_reason(path) or (error.strerror if denied else None)
    if reason is not None:
        return ConfigError(
            SETTING,
            f"{path} is read-only ({reason}); hermes-core run writes to its store: make it "
            "writable or point store.path at a writable copy",
        )
    detail = error.strerror if isinstance(error, OSError) else error
    return ConfigError(SETTING, f"cannot open {path} ({detail})")


def _damaged(path: Path, detail: str) -> ConfigError:
    return ConfigError(
        SETTING,
        f"{path} is damaged ({detail}); restore it from a backup, or salvage what is left "
        "with sqlite3's .recover into a new file",
    )


def _read_only_reason(path: Path) -> str | None:
    if _read_only_file_system(path):
        return "read-only file system"
    if path.exists() and not os.access(path, os.W_OK):
        return "no write permission on the file"
    if path.parent.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        return f"no write permission on {path.parent}"
    return None


def _read_only_file_system(path: Path) -> bool:
    place = path if path.exists() else path.parent
    try:
        return bool(os.statvfs(place).f_flag & os.ST_RDONLY)
    except OSError:
        return False
