"""Where sessions and transcripts live. The transcript is the source of truth; agents are a cache.

:class:`Store` is the interface; :class:`MemoryStore` keeps everything in the process and
:class:`hermes_core.sqlite_store.SQLiteStore` keeps it in a SQLite file.
:func:`store_from_config` picks one from ``store.path``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from hermes_core.types import Session

if TYPE_CHECKING:
    from hermes_core.settings import Config

RunStatus = Literal["pending", "answered", "failed"]

#: ``store.path`` value that keeps transcripts in memory only.
MEMORY_PATH = ":memory:"
#: File name of the default store, inside the user data directory.
DEFAULT_FILE_NAME = "sessions.db"
SECONDS_PER_DAY = 86_400.0


@dataclass
class StoredMessage:
    """One transcript line: a message of one conversation of one session.

    ``status`` is its run's: ``pending`` while the run is in flight (or when the process died
    during it), ``answered`` or ``failed``. ``model`` is the model that answered the run (or the
    last one tried); None until the run finishes.
    """

    session_key: str
    conversation: int
    run_id: str
    message: dict[str, Any]
    status: RunStatus
    created_at: float
    model: str | None = None


@dataclass(frozen=True)
class SessionSummary:
    """One line of ``sessions list``: a session and how many messages it holds."""

    key: str
    platform: str
    user_id: str | None
    model: str | None
    conversation: int
    created_at: float
    last_active: float
    messages: int
    unanswered: int


class Store(Protocol):
    """Persistence for sessions and transcripts."""

    async def open(self) -> None:
        """Prepare the store (create, check, migrate, prune); called by ``Gateway.start``."""
        ...

    async def close(self) -> None:
        """Release the store; called by ``Gateway.stop``."""
        ...

    async def load_session(self, key: str) -> Session | None:
        """The stored session ``key`` (without ``config``), or None."""
        ...

    async def save_session(self, session: Session) -> None:
        """Store the session's durable state: model override, plugin data, conversation."""
        ...

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        """Commit the user's message before the run starts (status ``pending``)."""
        ...

    async def finish_run(
        self,
        session: Session,
        run_id: str,
        added: list[dict[str, Any]] | None,
        model: str | None = None,
    ) -> None:
        """Mark the run answered and append ``added`` (assistant and tool messages), or, with
        ``added=None``, mark it failed: its user message stays in the transcript but out of
        the model's history. ``model`` is the model that answered (or the last one tried)."""
        ...

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` messages of the session's current conversation, answered runs
        only, oldest first, never starting with a tool result: what a new agent sends to the
        model (see :func:`bounded_history`)."""
        ...

    async def transcript(self, key: str) -> list[StoredMessage]:
        """Every stored message of a session, all conversations, oldest first."""
        ...

    async def sessions(self, platform: str | None = None) -> list[SessionSummary]:
        """Every stored session (of ``platform`` when given), most recently active first."""
        ...

    async def prune(self, before: float) -> int:
        """Delete sessions last active before ``before`` (a UNIX time) with their messages;
        returns how many sessions went."""
        ...


def bounded_history(messages: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` of ``messages``, without leading tool results.

    A tool result whose assistant tool call was cut off is rejected by OpenAI-compatible APIs.
    """
    recent = messages[-limit:] if limit > 0 else []
    start = next((i for i, m in enumerate(recent) if m.get("role") != "tool"), len(recent))
    return recent[start:]


def default_store_path() -> Path:
    """``sessions.db`` in the user data directory (``$XDG_DATA_HOME/hermes-core`` on Linux)."""
    import platformdirs

    return platformdirs.user_data_path("hermes-core", appauthor=False) / DEFAULT_FILE_NAME


def state_dir(config: Config) -> Path:
    """Where a gateway keeps its other state files: beside the store file, or in the user
    data directory when the store is not a file."""
    path = str(config.get("store.path") or "")
    if path and path != MEMORY_PATH:
        return Path(path).expanduser().resolve().parent
    return default_store_path().parent


def store_from_config(config: Config) -> Store:
    """The store ``store.path`` asks for: ``":memory:"``, a SQLite file, or (empty) the default
    file. Nothing is opened or created until :meth:`Store.open`."""
    path = str(config.get("store.path") or "")
    if path == MEMORY_PATH:
        return MemoryStore()
    from hermes_core.sqlite_store import SQLiteStore

    return SQLiteStore(
        Path(path).expanduser().resolve() if path else default_store_path(),
        retention_days=float(config.get("store.retention_days") or 0),
    )


class MemoryStore:
    """A :class:`Store` that lives and dies with the process."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._messages: dict[str, list[StoredMessage]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_session(self, key: str) -> Session | None:
        stored = self._sessions.get(key)
        return replace(stored, data=dict(stored.data)) if stored else None

    async def save_session(self, session: Session) -> None:
        self._sessions[session.key] = replace(session, data=dict(session.data), config=None)

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        self._sessions.setdefault(
            session.key, replace(session, data=dict(session.data), config=None)
        )
        self._messages.setdefault(session.key, []).append(
            StoredMessage(
                session.key, session.conversation, run_id, user_message, "pending", time.time()
            )
        )

    async def finish_run(
        self,
        session: Session,
        run_id: str,
        added: list[dict[str, Any]] | None,
        model: str | None = None,
    ) -> None:
        lines = self._messages.setdefault(session.key, [])
        status: RunStatus = "failed" if added is None else "answered"
        for line in lines:
            if line.run_id == run_id:
                line.status = status
                line.model = model
        # ``added`` starts with the user message, which begin_run already stored.
        for message in (added or [])[1:]:
            lines.append(
                StoredMessage(
                    session.key, session.conversation, run_id, message, status, time.time(), model
                )
            )

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        lines = self._messages.get(session.key, [])
        answered = [
            line.message
            for line in lines
            if line.conversation == session.conversation and line.status == "answered"
        ]
        return bounded_history(answered, limit)

    async def transcript(self, key: str) -> list[StoredMessage]:
        return list(self._messages.get(key, []))

    async def sessions(self, platform: str | None = None) -> list[SessionSummary]:
        summaries = [
            _summary(session, self._messages.get(key, []))
            for key, session in self._sessions.items()
            if platform is None or session.platform == platform
        ]
        return sorted(summaries, key=lambda s: s.last_active, reverse=True)

    async def prune(self, before: float) -> int:
        old = [key for key, session in self._sessions.items() if session.last_active < before]
        for key in old:
            del self._sessions[key]
            self._messages.pop(key, None)
        return len(old)


def _summary(session: Session, lines: list[StoredMessage]) -> SessionSummary:
    return SessionSummary(
        key=session.key,
        platform=session.platform,
        user_id=session.user_id,
        model=session.model,
        conversation=session.conversation,
        created_at=session.created_at,
        last_active=session.last_active,
        messages=len(lines),
        unanswered=sum(
            1 for line in lines if line.message.get("role") == "user" and line.status != "answered"
        ),
    )
