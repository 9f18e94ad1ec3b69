"""How transcript lines map to the SQLite store's rows, and the fenced session upsert (see
:mod:`hermes_core.sqlite_schema` for the tables)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from hermes_core.session_rows import upsert_session
from hermes_core.store import RunStatus, StaleSession
from hermes_core.types import Session

MESSAGE_COLUMNS = "role, content, tool_calls, tool_call_id, extra"
_KNOWN_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id"})
UPSERT_SESSION = upsert_session("sessions", ", ".join("?" * 9))
INSERT_MESSAGE = f"""
    INSERT INTO messages (session_key, conversation, run_id, {MESSAGE_COLUMNS}, model, status,
                          created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def encode(message: dict[str, Any]) -> tuple[str, str, str | None, str | None, str | None]:
    extra = {k: v for k, v in message.items() if k not in _KNOWN_KEYS}
    tool_calls = message.get("tool_calls")
    return (
        str(message["role"]),
        json.dumps(message.get("content")),
        json.dumps(tool_calls) if tool_calls is not None else None,
        message.get("tool_call_id"),
        json.dumps(extra) if extra else None,
    )


def decode(row: Iterable[Any]) -> dict[str, Any]:
    role, content, tool_calls, tool_call_id, extra = row
    message: dict[str, Any] = {"role": role, "content": json.loads(content)}
    if tool_calls is not None:
        message["tool_calls"] = json.loads(tool_calls)
    if tool_call_id is not None:
        message["tool_call_id"] = tool_call_id
    if extra is not None:
        message.update(json.loads(extra))
    return message


def message_row(
    session: Session, run_id: str, message: dict[str, Any], model: str | None, status: RunStatus
) -> tuple[Any, ...]:
    return (
        session.key,
        session.conversation,
        run_id,
        *encode(message),
        model,
        status,
        time.time(),
    )


def write_session(db: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Upsert a :func:`~hermes_core.session_rows.session_row`, or raise
    :class:`StaleSession` when the stored row has another version than the one the row was made
    from."""
    if db.execute(UPSERT_SESSION, row).fetchone() is None:
        [stored] = db.execute("SELECT version FROM sessions WHERE key = ?", (row[0],)).fetchone()
        raise StaleSession(row[0], row[-1] - 1, stored)


def check_version(db: sqlite3.Connection, session_key: str, version: int) -> None:
    """Raise :class:`StaleSession` unless the stored row (if any) has ``version``."""
    found = db.execute("SELECT version FROM sessions WHERE key = ?", (session_key,)).fetchone()
    if found is not None and found[0] != version:
        raise StaleSession(session_key, version, found[0])
