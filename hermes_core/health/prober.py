"""The gateway's own probes, for providers with ``breaker.probe = "active"``.

When such a breaker opens, a task owned here sleeps until its cooldown ends, claims the probe
and sends the smallest request there is (one user message) through the shared provider, so no
user's run waits on a model that may still be dead. It repeats after each failed probe and
ends when the breaker closes; :meth:`ActiveProber.aclose` cancels whatever is left at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib

from loguru import logger

from hermes_core.health.breaker import State
from hermes_core.health.registry import Key, ModelHealth
from hermes_core.providers import ProviderError, ProviderRegistry
from hermes_core.settings import ModelRef

#: What a probe asks: as little as a model can be asked.
PROBE_MESSAGES = [{"role": "user", "content": "ping"}]
#: The least wait between two probes of one breaker, whatever its cooldown.
MIN_DELAY_S = 0.1


class ActiveProber:
    """One task per open breaker of an active-probe provider, each owned until it ends."""

    def __init__(self, health: ModelHealth, providers: ProviderRegistry) -> None:
        self._health = health
        self._providers = providers
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    def schedule(self, key: Key) -> None:
        """Probe ``key`` when its cooldown ends, if its provider asked for active probes."""
        breaker = self._health.breaker(key)
        if breaker is None or not breaker.policy.active_probe or key in self._tasks:
            return
        task = asyncio.create_task(self._probe_until_closed(key), name=f"hermes-core probe {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._tasks.pop(key, None))

    async def _probe_until_closed(self, key: Key) -> None:
        while (breaker := self._health.breaker(key)) is not None and breaker.state is State.OPEN:
            delay = self._health.seconds_until(breaker.retry_at)
            # A probe that proved nothing left it due now: wait a cooldown, never spin.
            await asyncio.sleep(delay if delay > 0 else max(breaker.cooldown_s, MIN_DELAY_S))
            ref = self._health.probe_target(key)
            if ref is None or not await self._health.claim(key):
                return
            await self._probe(ref)

    async def _probe(self, ref: ModelRef) -> None:
        try:
            await self._providers.get(ref.provider).complete(ref.model, PROBE_MESSAGES, None)
        except ProviderError as error:
            await self._health.report(ref, error)
        except Exception as error:  # a provider's bug must not end the probing for good
            logger.warning("health: probe of {} raised {}: {}", ref, type(error).__name__, error)
            await self._health.abandon(ref)
        except BaseException:
            await self._health.abandon(ref)
            raise
        else:
            await self._health.report(ref, None)

    async def aclose(self) -> None:
        """Cancel every probe task and wait for each to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
