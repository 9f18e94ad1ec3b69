"""The agent cache: bounded by count (LRU) and idle time (TTL).

``evict`` is synchronous so that any hook, sync or async, can call it; the ``on_evict``
notifications it queues are delivered by :meth:`AgentCache.flush`, which the gateway awaits
after each run and command, outside every session lock.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hermes_core.agent import Agent

EvictCallback = Callable[[str, "Agent", str], Awaitable[None]]


def idle_keys(
    last_used: Mapping[str, float],
    idle_ttl_s: float,
    busy: Callable[[str], bool],
    now: float | None = None,
) -> list[str]:
    """The keys unused for ``idle_ttl_s`` (monotonic seconds) and not ``busy``; none when
    ``idle_ttl_s`` is 0, which disables idle expiry."""
    if idle_ttl_s <= 0:
        return []
    now = time.monotonic() if now is None else now
    return [key for key, used in last_used.items() if now - used >= idle_ttl_s and not busy(key)]


class AgentCache:
    """Cached agents by session key, least recently used first."""

    def __init__(self, max_agents: int, idle_ttl_s: float, on_evict: EvictCallback) -> None:
        self.max_agents = max_agents
        self.idle_ttl_s = idle_ttl_s
        self._on_evict = on_evict
        self._agents: OrderedDict[str, Agent] = OrderedDict()
        self._last_used: dict[str, float] = {}
        self._in_use: dict[str, int] = {}
        self._pending: list[tuple[str, Agent, str]] = []

    def __contains__(self, key: object) -> bool:
        return key in self._agents

    def __len__(self) -> int:
        return len(self._agents)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._agents))

    def get(self, key: str) -> Agent | None:
        """The cached agent of ``key`` (marking it recently used), or None."""
        agent = self._agents.get(key)
        if agent is not None:
            self._agents.move_to_end(key)
            self._last_used[key] = time.monotonic()
        return agent

    def peek(self, key: str) -> Agent | None:
        """The cached agent of ``key`` without marking it used: looking is not using."""
        return self._agents.get(key)

    def put(self, key: str, agent: Agent) -> None:
        """Cache ``agent``; the least recently used idle agents go when over ``max_agents``."""
        self._agents[key] = agent
        self._agents.move_to_end(key)
        self._last_used[key] = time.monotonic()
        # The new agent is about to run: it is never its own victim.
        self._shrink(keep=key)

    def _shrink(self, keep: str | None = None) -> None:
        """Evict least recently used idle agents until within ``max_agents``.

        Never evicts an agent mid-run: the cache may briefly exceed its bound instead, and
        shrinks back at the next :meth:`flush` after those runs end.
        """
        excess = len(self._agents) - self.max_agents
        if excess <= 0:
            return
        # Oldest first, and only as many as needed: no scan of every cached agent.
        idle = (k for k in self._agents if k != keep and not self._in_use.get(k))
        for victim in list(itertools.islice(idle, excess)):
            self.evict(victim, "lru")

    def evict(self, key: str, reason: str) -> Agent | None:
        """Remove ``key``'s agent; ``on_evict`` fires at the next :meth:`flush`."""
        agent = self._agents.pop(key, None)
        self._last_used.pop(key, None)
        if agent is not None:
            self._pending.append((key, agent, reason))
        return agent

    def acquire(self, key: str) -> None:
        """Mark ``key``'s agent busy for the length of a run."""
        self._in_use[key] = self._in_use.get(key, 0) + 1

    def release(self, key: str) -> None:
        """End a run: idle time counts from now. An over-full cache shrinks at :meth:`flush`,
        so ``post_run`` still finds the agent that just ran."""
        count = self._in_use.get(key, 0) - 1
        if count > 0:
            self._in_use[key] = count
            return
        self._in_use.pop(key, None)
        if key in self._agents:
            self._last_used[key] = time.monotonic()

    def evict_idle(self, now: float | None = None) -> int:
        """Evict agents unused for ``idle_ttl_s`` (0 disables); returns how many went."""
        stale = idle_keys(self._last_used, self.idle_ttl_s, self._in_use.__contains__, now)
        for key in stale:
            self.evict(key, "idle")
        return len(stale)

    def clear(self, reason: str) -> None:
        for key in list(self._agents):
            self.evict(key, reason)

    async def flush(self) -> None:
        """Shrink back within ``max_agents``, then deliver the queued ``on_evict``
        notifications, oldest first."""
        self._shrink()
        while self._pending:
            key, agent, reason = self._pending.pop(0)
            await self._on_evict(key, agent, reason)
