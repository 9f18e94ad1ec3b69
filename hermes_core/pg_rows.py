"""The PostgreSQL store's statements (see
:mod:`hermes_core.pg_schema` for the tables). Each statement is one round trip."""

from __future__ import annotations

from hermes_core.session_rows import insert_session, upsert_session

#: The placeholders of a session row's columns (``data`` is JSON).
_SESSION_VALUES = "$1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9"
UPSERT_SESSION = upsert_session("hermes_sessions", _SESSION_VALUES)
BEGIN_RUN = f"""
    WITH session AS ({UPSERT_SESSION})
    INSERT INTO hermes_messages (session_key, conversation, run_id, message, status, created_at)
    SELECT $1, $6, $10, $11::jsonb, 'pending', $12 FROM session
    RETURNING id
"""
# FOR UPDATE: a version bumped by a concurrent commit is seen (re-read), never missed.
FINISH_RUN = """
    WITH fence AS (SELECT version FROM hermes_sessions WHERE key = $1 FOR UPDATE),
    allowed AS (SELECT NOT EXISTS (SELECT FROM fence WHERE version <> $2) AS ok),
    marked AS (
        UPDATE hermes_messages SET status = $3, model = $4
        WHERE run_id = $5 AND session_key = $1 AND (SELECT ok FROM allowed)
    ),
    added AS (
        INSERT INTO hermes_messages (session_key, conversation, run_id, message, model, status,
                                     created_at)
        SELECT $1, $6, $5, line::jsonb, $4, $3, $7
        FROM unnest($8::text[]) WITH ORDINALITY AS lines (line, n)
        WHERE (SELECT ok FROM allowed)
        ORDER BY n
    )
    SELECT (SELECT ok FROM allowed), (SELECT version FROM fence)
"""

IMPORT_SESSION = insert_session("hermes_sessions", _SESSION_VALUES)
