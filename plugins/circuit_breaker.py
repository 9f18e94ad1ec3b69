"""Built-in ``circuit_breaker``: stop calling the LLM for a session that keeps failing hard.

It counts consecutive failed runs whose ``error_kind`` cannot be fixed by retrying
(``non_retryable``, ``auth``). At ``circuit_breaker.threshold`` it evicts the session's agent and
answers every further message itself, with no LLM request, until ``/reset`` or ``/new``. A
successful run resets the count. The count lives in ``session.data``, so sessions never share
it and it is stored with the session.
"""

from __future__ import annotations

from typing import Any

from loguru import logger

from hermes_core import hookimpl
from hermes_core.cache import AgentCache
from hermes_core.types import NON_RETRYABLE_KINDS, Message, RunResult, Session, make_result

NAME = "circuit_breaker"
DEFAULT_THRESHOLD = 3


def _threshold(session: Session) -> int:
    if session.config is None:
        return DEFAULT_THRESHOLD
    return int(session.config.get("circuit_breaker.threshold", DEFAULT_THRESHOLD))


def _state(session: Session) -> dict[str, Any]:
    state: dict[str, Any] = session.data.setdefault(NAME, {"failures": 0, "last_error": None})
    return state


def notice(failures: int, last_error: str | None) -> str:
    """The reply while the breaker is open."""
    reason = f" (last error: {last_error})" if last_error else ""
    return (
        f"This conversation is paused after {failures} consecutive failed requests that "
        f"retrying cannot fix{reason}. Send /reset to start a new conversation."
    )


@hookimpl(trylast=True)
def pre_run(session: Session, message: Message) -> RunResult | None:
    state = _state(session)
    if state["failures"] < _threshold(session):
        return None
    return make_result(
        failed=True,
        error=f"circuit open after {state['failures']} consecutive failures",
        error_kind="circuit_open",
        final_response=notice(state["failures"], state["last_error"]),
    )


@hookimpl(trylast=True)
def post_run(session: Session, result: RunResult, cache: AgentCache) -> None:
    state = _state(session)
    if not result["failed"]:
        state["failures"] = 0
        state["last_error"] = None
        return
    if result["error_kind"] not in NON_RETRYABLE_KINDS:
        return
    state["failures"] += 1
    state["last_error"] = result["error"]
    if state["failures"] == _threshold(session):
        logger.warning(
            "circuit open for session {} after {} failures: {}",
            session.key,
            state["failures"],
            result["error"],
        )
        cache.evict(session.key, "circuit_open")
