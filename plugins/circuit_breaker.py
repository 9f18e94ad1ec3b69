"""Built-in ``circuit_breaker``: stop calling the LLM for a session that keeps failing hard.

It counts consecutive failed runs whose ``error_kind`` cannot be fixed by retrying
(``non_retryable``, ``auth``). At ``circuit_breaker.threshold`` it evicts the session's agent and
answers every further message itself, with no LLM request, until ``/reset`` or ``/new``, or,
with ``circuit_breaker.cooldown_s`` set, until that long has passed: then one message goes
through as a trial (half-open), and the breaker stays open for another cooldown unless it
succeeds. A successful run resets the count. Runs skipped as ``unavailable`` (every model down
gateway-wide) say nothing about the session and are not counted. The count lives in the
session's plugin state, so sessions never share it and it is stored with the session.

Public API (what ``/status`` uses): :func:`status` gives a session's :class:`BreakerState`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

from hermes_core import hookimpl
from hermes_core.types import (
    NON_RETRYABLE_KINDS,
    Message,
    RunResult,
    Session,
    SessionState,
    make_result,
)

if TYPE_CHECKING:
    from hermes_core.cache import AgentCache
    from hermes_core.gateway import Gateway

NAME = "circuit_breaker"
DEFAULT_THRESHOLD = 3


@dataclass
class BreakerState:
    """One session's breaker: consecutive hard failures, and the last one's error."""

    failures: int = 0
    last_error: str | None = None
    #: When it opened, or its last trial failed (``time.time()``; sessions outlive processes).
    opened_at: float | None = None


STATE = SessionState(NAME, BreakerState)


def status(session: Session) -> BreakerState:
    """The breaker's state for ``session`` (a copy: changing it changes nothing)."""
    return STATE.get(session)


def _threshold(gateway: Gateway) -> int:
    return int(gateway.plugin_settings(NAME).get("threshold", DEFAULT_THRESHOLD))


def _cooldown_s(gateway: Gateway) -> float:
    return float(gateway.plugin_settings(NAME).get("cooldown_s", 0))


def notice(failures: int, last_error: str | None, retry_at: float | None = None) -> str:
    """The reply while the breaker is open; ``retry_at`` is when a message is tried again."""
    reason = f" (last error: {last_error})" if last_error else ""
    trial = ""
    if retry_at is not None:
        trial = f" A message sent after {time.strftime('%H:%M:%S UTC', time.gmtime(retry_at))} "
        trial += "will be tried again."
    return (
        f"This conversation is paused after {failures} consecutive failed requests that "
        f"retrying cannot fix{reason}.{trial} Send /reset to start a new conversation."
    )


@hookimpl(trylast=True)
def pre_run(session: Session, message: Message, gateway: Gateway) -> RunResult | None:
    state = STATE.get(session)
    if state.failures < _threshold(gateway):
        return None
    cooldown_s = _cooldown_s(gateway)
    retry_at = None
    if cooldown_s > 0:
        retry_at = (state.opened_at or 0.0) + cooldown_s
        if time.time() >= retry_at:
            return None  # half-open: this message is the trial; post_run judges it
    return make_result(
        failed=True,
        error=f"circuit open after {state.failures} consecutive failures",
        error_kind="circuit_open",
        final_response=notice(state.failures, state.last_error, retry_at),
    )


@hookimpl(trylast=True)
def post_run(session: Session, result: RunResult, cache: AgentCache, gateway: Gateway) -> None:
    if not result["failed"]:
        if session.data.get(NAME):
            STATE.put(session, BreakerState())
        return
    state = STATE.get(session)
    threshold = _threshold(gateway)
    trial = state.failures >= threshold and result["error_kind"] != "circuit_open"
    if result["error_kind"] not in NON_RETRYABLE_KINDS:
        if trial:  # a trial that failed on something else: wait another cooldown all the same
            state.opened_at = time.time()
            STATE.put(session, state)
        return
    state.failures += 1
    state.last_error = result["error"]
    if state.failures >= threshold:
        state.opened_at = time.time()
    STATE.put(session, state)
    if state.failures == threshold:
        logger.warning(
            "circuit open for session {} after {} failures: {}",
            session.key,
            state.failures,
            result["error"],
        )
        cache.evict(session.key, "circuit_open")
