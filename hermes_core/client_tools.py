"""Tools the client runs itself: offered beside the gateway's, and the runs they suspend.

A request may declare its own ``tools``. They are offered to the model with the gateway's
(:class:`ClientToolSet`); when the model calls one, the run stops with the calls for the client
to answer, and :class:`SuspendedRuns` keeps what the next request needs to continue it, and
ends in the store the runs nobody continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from loguru import logger

from hermes_core.run_request import Suspension
from hermes_core.tools import ToolSet

#: Ends an abandoned run in the store (the http platform marks it failed).
EndRun = Callable[[Suspension], Awaitable[None]]
#: Seconds :meth:`SuspendedRuns.aclose` waits for the store to end the abandoned runs.
CLOSE_GRACE_S = 5.0


@dataclass(frozen=True)
class ClientToolSet(ToolSet):
    """The gateway's tools of one round and the client's schemas, offered together.

    Calls to a client tool are never run here: :meth:`get` knows only the gateway's tools.
    """

    client: tuple[dict[str, Any], ...] = ()

    def schemas(self) -> list[dict[str, Any]]:
        return [*super().schemas(), *self.client]


def name_clash(client_names: Collection[str], toolset: ToolSet) -> str | None:
    """The first client tool named like one of the gateway's, or None."""
    return next((name for name in client_names if toolset.get(name) is not None), None)


class SuspendedRuns:
    """Runs waiting for a client's tool results, by key: the one owner of that state.

    Bounded by count (the oldest goes first) and by age (an expired run is never resumed). A
    run that leaves without being resumed (pushed out, expired, abandoned for a new message,
    or still waiting at :meth:`aclose`) is ended by ``end`` (the store marks it failed), one
    at a time, on the one task :meth:`start` starts: that task also wakes when the oldest run
    expires, so no run is left waiting in the store for a client that went away.
    """

    def __init__(self, *, max_runs: int, max_age_s: float, end: EndRun) -> None:
        self.max_runs = max_runs
        self.max_age_s = max_age_s
        self._end = end
        self._runs: OrderedDict[str, Suspension] = OrderedDict()
        self._abandoned: deque[Suspension] = deque()
        self._wake = asyncio.Event()  # a run came or left: look again
        self._settled = asyncio.Event()  # every abandoned run so far is ended
        self._settled.set()
        self._closing = False
        self._ender: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        self._expire()
        return len(self._runs)

    def put(self, key: str, run: Suspension) -> None:
        self._expire()
        replaced = self._runs.pop(key, None)
        if replaced is not None and replaced.run_id != run.run_id:
            self._abandon(replaced)
        self._runs[key] = run
        while len(self._runs) > self.max_runs:
            self._abandon(self._runs.popitem(last=False)[1])
        self._wake.set()  # the ender's next expiry may be this run's

    def take(self, key: str) -> Suspension | None:
        """The run suspended under ``key``, removed to be resumed; None when there is none or
        it expired."""
        self._expire()
        return self._runs.pop(key, None)

    def abandon(self, key: str) -> None:
        """Give up the run suspended under ``key``, if any: its session moved on."""
        if (run := self.take(key)) is not None:
            self._abandon(run)

    def peek(self, key: str) -> Suspension | None:
        self._expire()
        return self._runs.get(key)

    def _expire(self) -> None:
        deadline = time.monotonic() - self.max_age_s
        # Oldest first: insertion order is age order, since put() re-inserts.
        while self._runs:
            key, run = next(iter(self._runs.items()))
            if run.created > deadline:
                return
            del self._runs[key]
            self._abandon(run)

    def _abandon(self, run: Suspension) -> None:
        self._abandoned.append(run)
        self._settled.clear()
        self._wake.set()

    def _expires_in(self) -> float | None:
        """Seconds until the oldest run expires; None when none waits."""
        oldest = next(iter(self._runs.values()), None)
        if oldest is None:
            return None
        return max(0.0, oldest.created + self.max_age_s - time.monotonic())

    # --- the ender -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the task that ends abandoned runs; :meth:`aclose` stops it."""
        self._ender = asyncio.create_task(self._end_abandoned(), name="hermes-core abandoned runs")

    async def settled(self) -> None:
        """Return once every run abandoned so far is ended (or failed to be), by the task
        :meth:`start` started."""
        await self._settled.wait()

    async def aclose(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Abandon every run still waiting, end them all (within ``grace_s``), then stop the
        task. A run not ended by then stays ``pending`` in the store, as after a crash."""
        for run in self._runs.values():
            self._abandon(run)
        self._runs.clear()
        ender, self._ender = self._ender, None
        if ender is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(ender, grace_s)  # cancels it past grace_s
        except TimeoutError:
            logger.warning(
                "{} abandoned client-tool run(s) left pending: the store did not answer "
                "within {} s",
                len(self._abandoned),
                grace_s,
            )

    async def _end_abandoned(self) -> None:
        while True:
            self._expire()
            while self._abandoned:
                run = self._abandoned[0]  # left queued while ending: aclose may cancel it
                try:
                    await self._end(run)
                except Exception as error:  # the store failed: the run stays pending
                    logger.opt(exception=error).error(
                        "cannot end the abandoned run {} of session {}: {}",
                        run.run_id,
                        run.session_key,
                        error,
                    )
                self._abandoned.popleft()
            self._settled.set()
            if self._closing:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._expires_in()):
                    await self._wake.wait()
