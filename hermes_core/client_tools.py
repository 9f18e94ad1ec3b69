"""Tools the client runs itself: offered beside the gateway's, and the runs they suspend.

A request may declare its own ``tools``. They are offered to the model with the gateway's
(:class:`ClientToolSet`); when the model calls one, the run stops with the calls for the client
to answer, and :class:`SuspendedRuns` keeps what the next request needs to continue it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from hermes_core.run_request import Suspension
from hermes_core.tools import ToolSet


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

    Bounded by count (the oldest goes first) and by age (an expired run is never resumed); a
    run that leaves is simply forgotten: its turn never reached the history, and its stored
    user message stays unanswered.
    """

    def __init__(self, *, max_runs: int, max_age_s: float) -> None:
        self.max_runs = max_runs
        self.max_age_s = max_age_s
        self._runs: OrderedDict[str, Suspension] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._runs)

    def put(self, key: str, run: Suspension) -> None:
        self._expire()
        self._runs.pop(key, None)
        self._runs[key] = run
        while len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)

    def take(self, key: str) -> Suspension | None:
        """The run suspended under ``key``, removed; None when there is none or it expired."""
        self._expire()
        return self._runs.pop(key, None)

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
