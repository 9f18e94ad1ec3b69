"""``hermes-core run``: start every enabled platform, serve until they finish or a signal."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Coroutine
from typing import Any

from loguru import logger

from hermes_core.errors import ConfigError
from hermes_core.gateway import Gateway
from hermes_core.platform_settings import build_platform
from hermes_core.platforms import Platform

#: Net allocations between two young-generation collections (CPython's default: 700). At
#: 700 a gateway under load collects every few requests, and each collection walks every object
#: of the requests in flight: about 100 µs a request at 50 connections (docs/performance.md).
GC_YOUNG_THRESHOLD = 10_000


def run(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run(main)``, on uvloop when it is installed (the ``hermes-core[fast]`` extra),
    with young-generation collections :data:`GC_YOUNG_THRESHOLD` allocations apart.

    The HTTP parser is chosen in :mod:`hermes_core.http_protocol` (httptools when installed).
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # the fast extra
    except ImportError:
        return asyncio.run(main)
    logger.debug("event loop: uvloop")
    status: int = uvloop.run(main)  # typed Any when uvloop is not installed
    return status


async def _start_platforms(gateway: Gateway) -> list[tuple[str, Platform]]:
    built: list[tuple[str, Platform]] = []
    # Build every adapter before starting any: a factory raising ConfigError (a bad setting)
    # ends start-up with exit code 2 before anything listens or connects.
    for name in gateway.platform_plan.names:
        try:
            built.append((name, build_platform(gateway, name)))
        except ConfigError:
            raise
        except Exception as error:  # one broken adapter must not take down the others
            logger.error("platform {} failed to load: {}: {}", name, type(error).__name__, error)
    started: list[tuple[str, Platform]] = []
    for name, platform in built:
        try:
            await platform.start()
        except ConfigError:  # a taken port is the operator's to fix: exit 2, like a bad setting
            await asyncio.gather(*(_stop(other, running) for other, running in started))
            raise
        except Exception as error:  # one broken adapter must not take down the others
            logger.error("platform {} failed to start: {}: {}", name, type(error).__name__, error)
            continue
        logger.info("platform {} started", name)
        started.append((name, platform))
    return started


async def _stop(name: str, platform: Platform) -> None:
    try:
        await platform.stop()
    except Exception as error:
        logger.error("platform {} failed to stop cleanly: {}", name, error)


async def _wait_all_closed(platforms: list[tuple[str, Platform]]) -> None:
    await asyncio.gather(*(platform.wait_closed() for _, platform in platforms))


async def serve(gateway: Gateway) -> int:
    """Run the gateway until every platform closes or SIGINT/SIGTERM arrives; exit status."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    await gateway.start()
    try:
        platforms = await _start_platforms(gateway)
        if not platforms:
            logger.error("no platform is running; enable one under platforms.<name>.enabled")
            return 1
        all_closed = asyncio.create_task(_wait_all_closed(platforms))
        stop_wait = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({all_closed, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        for task in (all_closed, stop_wait):
            task.cancel()
        await asyncio.gather(all_closed, stop_wait, return_exceptions=True)
        if stop_requested.is_set():
            logger.info("signal received: stopping intake and finishing runs in flight")
        # Stopped together, so each platform's grace period runs at the same time.
        await asyncio.gather(*(_stop(name, platform) for name, platform in platforms))
        return 0
    finally:
        await gateway.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
