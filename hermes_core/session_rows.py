"""How a session maps to a row of a SQL store: the SQLite and the PostgreSQL store share it."""

from __future__ import annotations

import json
from typing import Any

from hermes_core.types import Session

#: The columns :func:`session_from_row` reads, after the key.
SESSION_COLUMNS = "platform, user_id, model, data, conversation, created_at, last_active, version"


def insert_session(table: str, values: str) -> str:
    """The ``INSERT`` of a :func:`session_row` into ``table``; ``values`` are the dialect's
    placeholders of its nine columns."""
    return f"INSERT INTO {table} (key, {SESSION_COLUMNS}) VALUES ({values})"


def upsert_session(table: str, values: str) -> str:
    """:func:`insert_session`, or the update of the stored row, fenced by its version: an
    existing row is updated only from the version the writer read. Returns the new version;
    no row when the write is fenced out."""
    return f"""
        {insert_session(table, values)}
        ON CONFLICT (key) DO UPDATE SET
            platform = excluded.platform, user_id = excluded.user_id, model = excluded.model,
            data = excluded.data, conversation = excluded.conversation,
            last_active = excluded.last_active, version = excluded.version
        WHERE {table}.version = excluded.version - 1
        RETURNING version
    """


def session_row(session: Session) -> tuple[Any, ...]:
    """The row a write stores: the session as it is now (key first), its version bumped."""
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
        session.version + 1,
    )


def session_from_row(key: str, row: Any) -> Session:
    """A :class:`Session` from the :data:`SESSION_COLUMNS` of a stored row."""
    platform, user_id, model, data, conversation, created_at, last_active, version = row
    return Session(
        key=key,
        platform=platform,
        user_id=user_id,
        model=model,
        data=json.loads(data),
        conversation=conversation,
        created_at=created_at,
        last_active=last_active,
        version=version,
    )
