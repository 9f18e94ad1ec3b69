"""Where sessions and transcripts live. The transcript is the source of truth; agents are a cache.

:class:`Store` is the interface; :class:`MemoryStore` keeps everything in the process,
:class:`hermes_core.sqlite_store.SQLiteStore` keeps it in a SQLite file (one process) and
:class:`hermes_core.pg_store.PostgresStore` in a PostgreSQL database that several processes
share. :func:`hermes_core.store_config.store_from_config` picks one from ``store.url`` or
``store.path``.

Every write of a session's row (:meth:`Store.begin_run`, :meth:`Store.save_session`) expects the
stored version to be the session's ``version`` and bumps both; :meth:`Store.finish_run` expects
it unchanged. A write from a stale copy raises :class:`StaleSession` and stores nothing: the
fencing that refuses a late write from an owner that lost its run lock.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from loguru import logger

from hermes_core.types import Session

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
class FinishedRun:
    """How run ``run_id`` ended, for :meth:`Store.finish_run`.

    ``added`` holds the assistant and tool messages after the user message
    :meth:`Store.begin_run` stored; ``None`` means the run failed. ``model`` is the model that
    answered (or the last one tried).
    """

    run_id: str
    added: list[dict[str, Any]] | None
    model: str | None = None

    @property
    def status(self) -> RunStatus:
        """What the run's messages are marked: ``added=None`` is a failed run."""
        return "failed" if self.added is None else "answered"


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


class StaleSession(RuntimeError):
    """A write from a copy of a session older than the stored one: another process (or a
    ``/reset`` there) wrote it since. Nothing of the write is stored."""

    def __init__(self, key: str, expected: int, stored: int | None) -> None:
        self.key = key
        super().__init__(
            f"session {key!r} changed in the store (version {stored}, this copy has "
            f"{expected}); the write is refused"
        )


class Store(Protocol):
    """Persistence for sessions and transcripts."""

    #: Whether other processes may write the store while it is open (PostgreSQL). Only then
    #: does :class:`~hermes_core.sessions.Sessions` compare versions under the run lock.
    shared: bool

    def hold(self, key: str) -> AbstractAsyncContextManager[int | None]:
        """Hold session ``key``'s run lock in the store, for every process sharing it; waits
        for another holder. Yields the stored version of the session read under the lock (None:
        no stored row, or the store is not :attr:`shared`). The lock is gone at the latest when
        its holder dies."""
        ...

    async def open(self) -> None:
        """Prepare the store (create, check, migrate, prune); called by ``Gateway.start``."""
        ...

    async def close(self) -> None:
        """Release the store; called by ``Gateway.stop``."""
        ...

    async def load_session(self, key: str) -> Session | None:
        """The stored session ``key``, or None."""
        ...

    async def save_session(self, session: Session) -> None:
        """Store the session's durable state: model override, plugin data, conversation;
        bumps its version (raises :class:`StaleSession` from a stale copy)."""
        ...

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        """Commit the user's message before the run starts (status ``pending``), with the
        session's row; bumps its version (raises :class:`StaleSession` from a stale copy)."""
        ...

    async def finish_run(self, session: Session, run: FinishedRun) -> None:
        """Mark the run answered and append its ``added`` messages, or, for a failed run
        (``added=None``), mark it failed: its user message stays in the transcript but out of
        the model's history; either way with the ``model`` of the run. Raises when the commit
        fails, and :class:`StaleSession` when the session's version changed since
        :meth:`begin_run`: the gateway then keeps the turn out of the agent's history too."""
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


#: What :func:`unshared_hold` gives: one no-op context for every session.
_UNSHARED: AbstractAsyncContextManager[int | None] = contextlib.nullcontext(None)


def unshared_hold(key: str) -> AbstractAsyncContextManager[int | None]:
    """:meth:`Store.hold` of a store only this process writes: the sessions component's
    in-process lock is the whole lock, and there is no other writer to check for."""
    return _UNSHARED


async def prune_retained(store: Store, retention_days: float) -> None:
    """Delete the sessions idle for over ``retention_days`` (0: keep all), as a store does
    when it opens (``store.retention_days``), and say how many went."""
    if retention_days <= 0:
        return
    pruned = await store.prune(time.time() - retention_days * SECONDS_PER_DAY)
    if pruned:
        logger.info("store: pruned {} session(s) idle for over {} day(s)", pruned, retention_days)


def bumped(session: Session, stored: int | None) -> None:
    """Check that ``stored`` (None: no row) is ``session``'s version, then bump it; the
    fencing rule of every write of a session's row."""
    if stored is not None and stored != session.version:
        raise StaleSession(session.key, session.version, stored)
    session.version += 1


class MemoryStore:
    """A :class:`Store` that lives and dies with the process."""

    shared = False

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._messages: dict[str, list[StoredMessage]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def hold(self, key: str) -> AbstractAsyncContextManager[int | None]:
        return unshared_hold(key)

    async def load_session(self, key: str) -> Session | None:
        stored = self._sessions.get(key)
        return _copy(stored) if stored else None

    async def save_session(self, session: Session) -> None:
        self._put(session)

    def _put(self, session: Session) -> None:
        stored = self._sessions.get(session.key)
        bumped(session, stored.version if stored else None)
        self._sessions[session.key] = _copy(session)

    def _check(self, session: Session) -> None:
        stored = self._sessions.get(session.key)
        if stored is not None and stored.version != session.version:
            raise StaleSession(session.key, session.version, stored.version)

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        self._put(session)
        self._messages.setdefault(session.key, []).append(
            StoredMessage(
                session.key, session.conversation, run_id, user_message, "pending", time.time()
            )
        )

    async def finish_run(self, session: Session, run: FinishedRun) -> None:
        self._check(session)
        lines = self._messages.setdefault(session.key, [])
        for line in lines:
            if line.run_id == run.run_id:
                line.status = run.status
                line.model = run.model
        for message in run.added or []:
            lines.append(
                StoredMessage(
                    session.key,
                    session.conversation,
                    run.run_id,
                    message,
                    run.status,
                    time.time(),
                    run.model,
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


def _copy(session: Session) -> Session:
    """A copy of ``session`` whose plugin state is its own: the fields copied as they are,
    without ``dataclasses.replace``'s call of ``__init__`` (0.9 against 3.6 µs, twice a run)."""
    copied = object.__new__(Session)
    copied.__dict__.update(session.__dict__)
    copied.data = dict(session.data)
    return copied


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
