"""Where sessions and transcripts live. The transcript is the source of truth; agents are a cache.

:class:`Store` is the interface; :class:`MemoryStore` keeps everything in the process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from hermes_core.types import Session

RunStatus = Literal["pending", "answered", "failed"]


@dataclass
class StoredMessage:
    """One transcript line: a message of one conversation of one session."""

    session_key: str
    conversation: int
    run_id: str
    message: dict[str, Any]
    status: RunStatus
    created_at: float


class Store(Protocol):
    """Persistence for sessions and transcripts."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def load_session(self, key: str) -> Session | None: ...
    async def save_session(self, session: Session) -> None: ...

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        """Commit the user's message before the run starts (status ``pending``)."""
        ...

    async def finish_run(
        self, session: Session, run_id: str, added: list[dict[str, Any]] | None
    ) -> None:
        """Mark the run answered and append ``added`` (assistant and tool messages), or, with
        ``added=None``, mark it failed: its user message stays in the transcript but out of
        the model's history."""
        ...

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` messages of the session's current conversation, answered runs
        only, oldest first: what a new agent sends to the model."""
        ...

    async def transcript(self, key: str) -> list[StoredMessage]:
        """Every stored message of a session, all conversations, oldest first."""
        ...


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
        self._sessions[session.key] = replace(session, data=dict(session.data))

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        self._messages.setdefault(session.key, []).append(
            StoredMessage(
                session.key, session.conversation, run_id, user_message, "pending", time.time()
            )
        )

    async def finish_run(
        self, session: Session, run_id: str, added: list[dict[str, Any]] | None
    ) -> None:
        lines = self._messages.setdefault(session.key, [])
        status: RunStatus = "failed" if added is None else "answered"
        for line in lines:
            if line.run_id == run_id:
                line.status = status
        # ``added`` starts with the user message, which begin_run already stored.
        for message in (added or [])[1:]:
            lines.append(
                StoredMessage(
                    session.key, session.conversation, run_id, message, status, time.time()
                )
            )

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        lines = self._messages.get(session.key, [])
        answered = [
            line.message
            for line in lines
            if line.conversation == session.conversation and line.status == "answered"
        ]
        return answered[-limit:]

    async def transcript(self, key: str) -> list[StoredMessage]:
        return list(self._messages.get(key, []))
