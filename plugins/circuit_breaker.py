"""Built-in ``circuit_breaker``: stop calling the LLM for a session that keeps failing hard.

It counts consecutive failed runs whose ``error_kind`` cannot be fixed by retrying
(``non_retryable``, ``auth``). At ``circuit_breaker.threshold`` it evicts the session's agent and
answers every further message itself, with no LLM request, until ``/reset`` or ``/new``. A
successful run resets the count. The count lives in the session's plugin state, so sessions
never share it and it is stored with the session.

Public API (what ``/status`` uses): :func:`status` gives a session's :class:`BreakerState`.
"""

from __future__ import annotations

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


STATE = SessionState(NAME, BreakerState)


def status(session: Session) -> BreakerState:
    """The breaker's state for ``session`` (a copy: changing it changes nothing)."""
    return STATE.get(session)


def _threshold(gateway: Gateway) -> int:
    return int(gateway.plugin_settings(NAME).get("threshold", DEFAULT_THRESHOLD))


def notice(failures: int, last_error: str | None) -> str:
    """The reply while the breaker is open."""
    reason = f" (last error: {last_error})" if last_error else ""
    return (
        f"This conversation is paused after {failures} consecutive failed requests that "
        f"retrying cannot fix{reason}. Send /reset to start a new conversation."
    )


@hookimpl(trylast=True)
def pre_run(session: Session, message: Message, gateway: Gateway) -> RunResult | None:
    state = STATE.get(session)
    if state.failures < _threshold(gateway):
        return None
    return make_result(
        failed=True,
        error=f"circuit open after {state.failures} consecutive failures",
        error_kind="circuit_open",
        final_response=notice(state.failures, state.last_error),
    )


@hookimpl(trylast=True)
def post_run(session: Session, result: RunResult, cache: AgentCache, gateway: Gateway) -> None:
    if not result["failed"]:
        if session.data.get(NAME):
            STATE.put(session, BreakerState())
        return
    if result["error_kind"] not in NON_RETRYABLE_KINDS:
        return
    state = STATE.get(session)
    state.failures += 1
    state.last_error = result["error"]
    STATE.put(session, state)
    if state.failures == _threshold(gateway):
        logger.warning(
            "circuit open for session {} after {} failures: {}",
            session.key,
            state.failures,
            result["error"],
        )
        cache.evict(session.key, "circuit_open")
