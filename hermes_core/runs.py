"""What leaves a run for the user and the store: crash results and scrubbed texts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hermes_core.redaction import scrub
from hermes_core.types import Reply, RunResult, make_result

if TYPE_CHECKING:
    from hermes_core.agent import Agent

#: What the user reads when a run crashed, by whether their message reached the store.
KEPT_TEXT = "Sorry, something went wrong on our side; your message was kept. Please retry."
NOT_KEPT_TEXT = (
    "Sorry, something went wrong on our side and your message could not be saved. "
    "Please send it again."
)


def internal_failure(
    error: Exception, started: float, agent: Agent | None = None, *, kept: bool
) -> RunResult:
    """The RunResult of a run that crashed: the user gets an apology that tells the truth
    about their message, never a traceback."""
    return make_result(
        failed=True,
        error=f"{type(error).__name__}: {error}",
        error_kind="internal",
        final_response=KEPT_TEXT if kept else NOT_KEPT_TEXT,
        model=str(agent.models[0]) if agent else None,
        primary_model=str(agent.models[0]) if agent else None,
        duration_s=time.perf_counter() - started,
    )


def written(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the store and the history keep it: no configured secret in its text."""
    content = message.get("content")
    return {**message, "content": scrub(content)} if isinstance(content, str) else message


def scrubbed(result: RunResult) -> RunResult:
    """The result with every configured secret replaced in the texts a user may see."""
    for key in ("final_response", "error"):
        if (text := result[key]) is not None:
            result[key] = scrub(text)
    return result


def crash_reply(error: Exception, started: float) -> Reply:
    result = internal_failure(error, started, kept=False)
    return Reply(result["final_response"] or "", result)
