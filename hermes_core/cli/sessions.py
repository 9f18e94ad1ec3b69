"""``hermes-core sessions``: list, show, export and prune the stored sessions.

The store is the PostgreSQL database ``store.url`` names, else the SQLite file ``store.path``
names (the default one when empty). Reading commands never
create or change it and need no lock, so they work beside a running gateway; with no file there
are simply no sessions. Like the rest of the CLI, a user mistake or a damaged store ends in one
line on stderr and exit code 2; an unknown session key exits 1. What users and models wrote is
printed with its control characters made visible (:func:`~hermes_core.terminal.visible`).
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hermes_core.cli.options import EXIT_CONFIG, SettingsOption
from hermes_core.cli.store import postgres_store, sqlite_path, store_settings
from hermes_core.errors import HermesError
from hermes_core.pg_store import NoStore
from hermes_core.platforms import session_owner
from hermes_core.sqlite_schema import check_store_file, store_file_error
from hermes_core.sqlite_store import Access, SQLiteStore
from hermes_core.store import (
    SECONDS_PER_DAY,
    SessionSummary,
    Store,
    StoredMessage,
)
from hermes_core.terminal import visible
from hermes_core.types import Session

sessions_app = typer.Typer(
    help="List, show, export and prune stored sessions.", no_args_is_help=True
)

EXIT_NOT_FOUND = 1
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": SECONDS_PER_DAY, "w": 7 * SECONDS_PER_DAY}
DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
#: How ``show`` and ``export md`` mark a user message whose run has no stored answer.
STATUS_NOTES = {
    "pending": "UNANSWERED: the run did not finish",
    "failed": "FAILED: the run ended without an answer (an error, or client tool results "
    "that never came)",
}

T = TypeVar("T")


class ExportFormat(enum.StrEnum):
    """Formats of ``sessions export``."""

    jsonl = "jsonl"
    md = "md"


# --- store access --------------------------------------------------------------------------


def _with_store(
    settings: Path | None,
    action: Callable[[Store], Awaitable[T]],
    missing: T,
    access: Access = Access.READ,
) -> T:
    """Run ``action(store)`` on the opened store, or return ``missing`` when there is no store
    yet (no file, or an empty one).

    A :class:`HermesError` (bad settings, a file that is not a store) or a SQLite error (a
    damaged file) ends the command with one line and exit code 2.
    """

    async def run(store: Store) -> T:
        try:
            await store.open()
        except NoStore:  # a database without the schema: no sessions yet
            return missing
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        table = store_settings(settings)
        postgres = postgres_store(table, migrate=False)
        if postgres is not None:
            return asyncio.run(run(postgres))
        path = sqlite_path(table)
        if check_store_file(path) == 0:
            return missing
        try:
            return asyncio.run(run(SQLiteStore(path, access=access)))
        except sqlite3.Error as error:  # damage the check at open did not reach
            raise store_file_error(path, error) from None
    except HermesError as error:
        typer.echo(f"hermes-core: error: {error}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def _load(settings: Path | None, key: str) -> tuple[Session, list[StoredMessage]]:
    """The session ``key`` and its transcript; exit 1 when it is not stored."""

    async def load(store: Store) -> tuple[Session | None, list[StoredMessage]]:
        return await store.load_session(key), await store.transcript(key)

    nothing: tuple[Session | None, list[StoredMessage]] = (None, [])
    session, lines = _with_store(settings, load, nothing)
    if session is None:
        typer.echo(f"hermes-core: error: no session {key!r} is stored", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    return session, lines


# --- formatting ----------------------------------------------------------------------------


def local_time(timestamp: float) -> str:
    """``2026-01-31 14:05:09`` in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def iso_time(timestamp: float) -> str:
    """ISO 8601 in UTC, to the millisecond, for JSON output."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def text_of(content: Any) -> str:
    """A message's content as plain text (strings, parts lists, or JSON for anything else)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return json.dumps(content)


def tool_calls_of(message: dict[str, Any]) -> list[str]:
    """``name(arguments)`` for each tool call an assistant message makes."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        calls.append(f"{function.get('name', '?')}({function.get('arguments', '')})")
    return calls


def _header(session: Session) -> list[str]:
    return [
        f"Session {session.key} (platform {session.platform}, user {session.user_id or '-'})",
        f"Created {local_time(session.created_at)}, last active "
        f"{local_time(session.last_active)}, model override: {session.model or 'none'}",
        f"Current conversation: {session.conversation}",
    ]


def _walk(lines: list[StoredMessage]) -> Iterator[tuple[StoredMessage, str, bool]]:
    """Each stored message with its role, and whether it starts a new conversation."""
    previous: int | None = None
    for line in lines:
        yield line, str(line.message.get("role")), line.conversation != previous
        previous = line.conversation


def transcript_text(session: Session, lines: list[StoredMessage]) -> str:
    """The transcript as ``sessions show`` prints it."""
    out = _header(session)
    for line, role, new_conversation in _walk(lines):
        message = line.message
        if new_conversation:
            out += ["", f"--- conversation {line.conversation} ---"]
        label = role
        if role == "assistant" and line.model:
            label += f" [{line.model}]"
        elif role == "tool" and message.get("tool_call_id"):
            label += f" [{message['tool_call_id']}]"
        text = text_of(message.get("content"))
        calls = tool_calls_of(message)
        if calls:
            text = (text + " " if text else "") + "-> calls " + ", ".join(calls)
        if role == "user" and line.status in STATUS_NOTES:
            text += f"  [{STATUS_NOTES[line.status]}]"
        body = text.replace("\n", "\n" + " " * 21)  # continuation lines under the text
        out.append(f"{local_time(line.created_at)}  {label}: {body}")
    if not lines:
        out += ["", "(no messages)"]
    return "\n".join(out)


def transcript_jsonl(lines: list[StoredMessage]) -> str:
    """One JSON object per message: the OpenAI message plus where and when it was stored."""
    return "".join(
        json.dumps(
            {
                "session_key": line.session_key,
                "conversation": line.conversation,
                "run_id": line.run_id,
                "status": line.status,
                "model": line.model,
                "created_at": iso_time(line.created_at),
                **line.message,
            }
        )
        + "\n"
        for line in lines
    )


def transcript_markdown(session: Session, lines: list[StoredMessage]) -> str:
    """The transcript as a Markdown document."""
    out = [
        f"# Session `{session.key}`",
        "",
        f"- platform: {session.platform}",
        f"- user: {session.user_id or '-'}",
        f"- created: {local_time(session.created_at)}",
        f"- last active: {local_time(session.last_active)}",
        f"- model override: {session.model or 'none'}",
    ]
    for line, role, new_conversation in _walk(lines):
        message = line.message
        if new_conversation:
            out += ["", f"## Conversation {line.conversation}"]
        meta = [local_time(line.created_at)]
        if role == "assistant" and line.model:
            meta.insert(0, line.model)
        out += ["", f"**{role}** · {' · '.join(meta)}", ""]
        text = text_of(message.get("content"))
        if role == "tool":
            out += ["```", text, "```"]
        elif text:
            out.append(text)
        out += [f"- calls `{call}`" for call in tool_calls_of(message)]
        if role == "user" and line.status in STATUS_NOTES:
            out += ["", f"> **{STATUS_NOTES[line.status]}**"]
    return "\n".join(out) + "\n"


def summaries_table(summaries: list[SessionSummary]) -> str:
    """``sessions list`` as aligned columns."""
    rows = [("KEY", "PLATFORM", "MESSAGES", "UNANSWERED", "LAST ACTIVE", "OWNER", "MODEL")]
    rows += [
        (
            visible(s.key),
            visible(s.platform),
            str(s.messages),
            str(s.unanswered),
            local_time(s.last_active),
            visible(session_owner(s.key) or "-"),
            visible(s.model or "-"),
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` in seconds."""
    match = DURATION_PATTERN.match(text)
    if match is None:
        raise typer.BadParameter(
            f"expected a number and a unit (s, m, h, d, w), e.g. 30d; got {text!r}"
        )
    return float(match[1]) * DURATION_UNITS[match[2]]


# --- commands ------------------------------------------------------------------------------


@sessions_app.command("list")
def list_sessions(
    settings: SettingsOption = None,
    platform: Annotated[
        str | None, typer.Option("--platform", help="Only sessions of this platform.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List stored sessions, most recently active first."""

    async def fetch(store: Store) -> list[SessionSummary]:
        return await store.sessions(platform)

    summaries: list[SessionSummary] = _with_store(settings, fetch, [])
    if as_json:
        rows = [
            {
                **asdict(s),
                "owner": session_owner(s.key),  # the API key that made it, from the key
                "created_at": iso_time(s.created_at),
                "last_active": iso_time(s.last_active),
            }
            for s in summaries
        ]
        typer.echo(json.dumps(rows, indent=2))
    elif summaries:
        typer.echo(summaries_table(summaries))
    else:
        typer.echo("No sessions stored.")


@sessions_app.command("show")
def show(
    key: Annotated[str, typer.Argument(help="Session key, e.g. console:local.")],
    settings: SettingsOption = None,
) -> None:
    """Print a session's transcript; marks user messages whose run failed or never finished."""
    typer.echo(visible(transcript_text(*_load(settings, key))))


@sessions_app.command("export")
def export(
    key: Annotated[str, typer.Argument(help="Session key, e.g. console:local.")],
    output_format: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl: one message per line; md: Markdown.")
    ] = ExportFormat.jsonl,
    settings: SettingsOption = None,
) -> None:
    """Write a session's transcript to stdout."""
    session, lines = _load(settings, key)
    if output_format is ExportFormat.jsonl:
        typer.echo(transcript_jsonl(lines), nl=False)
    else:
        typer.echo(visible(transcript_markdown(session, lines)), nl=False)


@sessions_app.command("prune")
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete sessions idle for longer, e.g. 30d, 12h, 2w.",
            show_default=False,
        ),
    ],
    settings: SettingsOption = None,
) -> None:
    """Delete sessions (and their transcripts) last active longer ago than --older-than."""
    cutoff = time.time() - parse_duration(older_than)

    async def delete(store: Store) -> int:
        return await store.prune(cutoff)

    count = _with_store(settings, delete, 0, Access.SHARED)
    typer.echo(f"Pruned {count} session(s) last active before {local_time(cutoff)}.")
