"""The sessions component: the one owner of loaded sessions, their locks and their store I/O.

Loaded sessions are a cache of the store, bounded like the agent cache: by count (least
recently used first) and by idle time. A session that leaves it is simply loaded again from
the store when its next message comes; one that is held (a message of it is being handled, or
waits its turn) never leaves. Every read and write of sessions and transcripts goes through
here, so the store and the gateway's view of a session cannot drift apart.

When the store is shared with other processes (PostgreSQL), holding a session also takes its
run lock in the store, and the version stored is compared, under that lock, with the loaded
copy's: another process ran the session (or ``/reset`` or ``/model`` it) since, so the copy is
dropped and reloaded, and ``on_stale`` drops the cached agent, whose history is then reloaded
too. A write refused as stale (:class:`~hermes_core.store.StaleSession`) drops them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from loguru import logger

from hermes_core.cache import idle_keys
from hermes_core.store import FinishedRun, StaleSession, Store
from hermes_core.types import Message, Session

T = TypeVar("T")


class Sessions:
    """Sessions by key, loaded from ``store`` on demand; runs of one session one at a time."""

    def __init__(
        self,
        store: Store,
        *,
        max_sessions: int,
        idle_ttl_s: float,
        on_stale: Callable[[str], None] = lambda key: None,
    ) -> None:
        self.store = store
        self.on_stale = on_stale
        self.max_sessions = max_sessions
        self.idle_ttl_s = idle_ttl_s
        self._loaded: OrderedDict[str, Session] = OrderedDict()
        self._used: dict[str, float] = {}
        # A lock per session with a waiter or holder, and how many there are.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._loaded)

    def __contains__(self, key: object) -> bool:
        return key in self._loaded

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Serialize the handling of ``key``'s messages: waiters go first-in first-out
        (``asyncio.Lock``, then the store's lock, which other processes share), and the
        session stays loaded while held."""
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            # In-process first: a session's waiters here wait without taking a store connection.
            async with lock, self.store.hold(key) as stored:
                loaded = self._loaded.get(key)
                if self.store.shared and loaded is not None and stored != loaded.version:
                    self._drop(key, f"version {loaded.version} loaded, {stored} stored")
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]  # no waiter left: no lock per session forever
            else:
                self._locks[key] = (lock, users - 1)
            self._used[key] = time.monotonic()
            self._shrink()

    async def get(self, key: str, platform: str) -> Session:
        """The session ``key``: loaded, from the store, or new."""
        session = self._loaded.get(key)
        if session is None:
            session = await self.store.load_session(key) or Session(key=key, platform=platform)
            self._loaded[key] = session
        self._loaded.move_to_end(key)
        self._used[key] = time.monotonic()
        return session

    async def for_message(self, message: Message) -> Session:
        """The session ``message`` belongs to: :meth:`get`'s, or a stateless run's own, which
        is never kept, so nothing of it outlives the reply (a resumed one is read back from the
        store, as its version fences the store's writes)."""
        request = message.request
        if request is None or not request.stateless:
            return await self.get(message.session_key, message.platform)
        stored = None
        if request.resume is not None and request.record:
            stored = await self.store.load_session(message.session_key)
        return stored or Session(key=message.session_key, platform=message.platform)

    def _shrink(self) -> None:
        excess = len(self._loaded) - self.max_sessions
        if excess <= 0:
            return
        # Oldest first, and only as many as needed: no scan of every loaded session.
        idle = list(itertools.islice((k for k in self._loaded if k not in self._locks), excess))
        for key in idle:
            self._forget(key)

    def evict_idle(self, now: float | None = None) -> int:
        """Unload sessions unused for ``idle_ttl_s`` (0 disables); returns how many went."""
        stale = idle_keys(self._used, self.idle_ttl_s, self._locks.__contains__, now)
        for key in stale:
            self._forget(key)
        return len(stale)

    def _forget(self, key: str) -> None:
        self._loaded.pop(key, None)
        self._used.pop(key, None)

    def _drop(self, key: str, why: str) -> None:
        """Another process wrote the session: reload it and its agent's history."""
        logger.info("session {} changed in the store ({}): reloading it", key, why)
        self._forget(key)
        self.on_stale(key)

    async def _fenced(self, key: str, write: Awaitable[T]) -> T:
        try:
            return await write
        except StaleSession as stale:
            self._drop(key, str(stale))
            raise

    # --- store I/O -----------------------------------------------------------------------

    async def save(self, session: Session) -> None:
        await self._fenced(session.key, self.store.save_session(session))

    async def begin_run(self, session: Session, run_id: str, user_message: dict[str, Any]) -> None:
        await self._fenced(session.key, self.store.begin_run(session, run_id, user_message))

    async def finish_run(self, session: Session, run: FinishedRun) -> None:
        await self._fenced(session.key, self.store.finish_run(session, run))

    async def history(self, session: Session, limit: int) -> list[dict[str, Any]]:
        return await self.store.history(session, limit)

    async def fail_run(self, key: str, platform: str, run_id: str, *, stateless: bool) -> None:
        """Mark run ``run_id`` of session ``key`` failed: a run that ended between messages,
        with nobody left to answer (a client-tool run whose results never came).

        A kept session is held as for a message, so the write waits its turn and is fenced
        like a run's; a ``stateless`` one (nobody holds it) is read back from the store, and
        nothing is written when it was never stored."""
        failed = FinishedRun(run_id, None)
        if stateless:
            if (stored := await self.store.load_session(key)) is not None:
                await self.store.finish_run(stored, failed)
            return
        async with self.hold(key):
            await self.finish_run(await self.get(key, platform), failed)
