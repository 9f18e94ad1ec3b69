"""Run events: what a run does, as it does it, for platforms and plugins that stream.

``gateway.stream(message)`` yields a run's events in order, ending with :class:`RunFinished`;
``gateway.handle(message)`` runs the same path and returns only the final reply. No hook fires
per event: per-token work must stay cheap, so events go straight from the run to whoever
consumes the stream.

The events of the current run are delivered through a context variable that
:meth:`hermes_core.gateway.Gateway.stream` sets on the task running the message; tasks the run
starts (tool calls) inherit it. :func:`emit` does nothing when nobody is listening.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hermes_core.types import Reply, Usage


@dataclass(frozen=True)
class RunStarted:
    """The run began: the user's message is stored and ``pre_run`` let it through."""

    session_key: str
    model: str


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply, in order. Pieces of a reply that failed after they were sent
    are followed by a failed :class:`RunFinished`; they never enter the history."""

    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    """The model asked for a tool call; it is about to run."""

    call_id: str
    tool: str
    arguments: str


@dataclass(frozen=True)
class ToolCallFinished:
    """A tool call ended with the text the model will see (errors included)."""

    call_id: str
    tool: str
    result: str
    duration_s: float


@dataclass(frozen=True)
class Fallback:
    """The run moved from ``from_model`` to ``to_model`` (before any text was sent)."""

    from_model: str
    to_model: str
    error: str


@dataclass(frozen=True)
class UsageReported:
    """Tokens the upstream counted for one request of the run."""

    model: str
    usage: Usage


@dataclass(frozen=True)
class RunFinished:
    """The message was handled: the last event of every stream. ``reply.result`` is the
    run's RunResult (``None`` for a slash command)."""

    reply: Reply


RunEvent = (
    RunStarted
    | TextDelta
    | ToolCallStarted
    | ToolCallFinished
    | Fallback
    | UsageReported
    | RunFinished
)
Sink = Callable[[RunEvent], Any]

#: Where the current run's events go; ``None`` when nobody streams it.
current_sink: ContextVar[Sink | None] = ContextVar("hermes_core_run_events", default=None)


def emit(event: RunEvent) -> None:
    """Hand ``event`` to the current run's stream, if anyone is listening."""
    sink = current_sink.get()
    if sink is not None:
        sink(event)


def streaming() -> bool:
    """Whether the current run has a listener (worth asking the provider to stream)."""
    return current_sink.get() is not None


async def until_finished(queue: asyncio.Queue[RunEvent]) -> AsyncIterator[RunEvent]:
    """The events put in ``queue``, up to and including the :class:`RunFinished`."""
    while True:
        event = await queue.get()
        yield event
        if isinstance(event, RunFinished):
            return
