"""What a platform asks of one run beyond its text, and what the run tells it back.

A :class:`RunRequest` rides on :attr:`hermes_core.types.Message.request`. It carries the
sampling and output parameters forwarded to the upstream on every request of the run, the
client's own tools, and, for a stateless conversation, the messages that are the history. The
run fills in its :class:`RunOutcome`: the upstream's finish reason and, when the model called
a client tool, the :class:`Suspension` the client's tool results continue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hermes_core.providers import ToolCall


@dataclass(frozen=True)
class Suspension:
    """A run stopped because the model called tools only the client can run.

    :ivar session_key: the session the run belongs to (a stateless one's own key).
    :ivar run_id: the store's run; it stays ``pending`` until the run is resumed and answered,
        or marked failed once abandoned (:class:`~hermes_core.client_tools.SuspendedRuns`).
    :ivar user_message: the message that started the turn.
    :ivar messages: everything sent to the model so far, the assistant's tool calls and the
        gateway's own tool results included: the next request continues from here.
    :ivar added: the turn's messages after the user's, for the store and the history.
    :ivar client_calls: the calls the client must answer, in the model's order.
    :ivar stateless: the run is a stateless conversation's: no kept session holds it.
    """

    session_key: str
    run_id: str
    user_message: dict[str, Any]
    messages: list[dict[str, Any]]
    added: list[dict[str, Any]]
    client_calls: tuple[ToolCall, ...]
    stateless: bool = False
    created: float = field(default_factory=time.monotonic)

    @property
    def call_ids(self) -> frozenset[str]:
        return frozenset(call.id for call in self.client_calls)


@dataclass
class RunOutcome:
    """Filled in by the run: why the model stopped, and the suspension, if it is one."""

    finish_reason: str | None = None
    #: The client tools the model called: the run is suspended on them.
    client_calls: list[ToolCall] = field(default_factory=list)
    #: What the model has seen when it called them (the gateway's tool results included).
    context: list[dict[str, Any]] = field(default_factory=list)
    #: Set by :meth:`RunRequest.suspend` from the above once the turn is kept for resuming.
    suspension: Suspension | None = None


@dataclass
class RunRequest:
    """Per-run options a platform sets on a message.

    :ivar params: request fields sent as they are with every upstream request of the run
        (``max_tokens``, ``temperature``, ``response_format``…).
    :ivar client_tools: tool schemas (OpenAI ``tools`` entries) the client runs itself.
    :ivar stateless: the run belongs to no kept session: nothing of it stays in memory after
        it (no loaded session, no cached agent).
    :ivar conversation: a stateless run's messages, ending with the new input; None for a
        session, whose history is its own.
    :ivar record: whether the run is written to the transcript store (a session's always is).
    :ivar resume: the suspended run this request's ``tool_results`` continue.
    :ivar tool_results: the client's ``role: "tool"`` messages answering ``resume``.
    :ivar continued: for a stateless ``conversation`` whose tool results no run waits for, the
        turn's messages after the user's (the assistant's tool calls, the results): new to
        the store, which has the user's message from the run that asked for them.
    """

    params: dict[str, Any] = field(default_factory=dict)
    stateless: bool = False
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    conversation: list[dict[str, Any]] | None = None
    record: bool = True
    resume: Suspension | None = None
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    continued: list[dict[str, Any]] = field(default_factory=list)
    outcome: RunOutcome = field(default_factory=RunOutcome)

    @property
    def client_tool_names(self) -> frozenset[str]:
        return frozenset(tool["function"]["name"] for tool in self.client_tools)

    def suspend(
        self,
        session_key: str,
        run_id: str,
        user_message: dict[str, Any],
        added: list[dict[str, Any]] | None,
    ) -> bool:
        """Keep the turn as the outcome's :attr:`~RunOutcome.suspension` when the model called
        client tools (and the run did not fail: ``added`` is None); returns whether it did."""
        outcome = self.outcome
        if added is None or not outcome.client_calls:
            return False
        calls = tuple(outcome.client_calls)
        outcome.suspension = Suspension(
            session_key, run_id, user_message, outcome.context, added, calls, self.stateless
        )
        return True

    def opening(
        self, system: list[dict[str, Any]], default: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The messages the run's first request sends, and the turn's messages so far.

        ``system`` is the gateway's system prompt (as messages); ``default`` is what a session
        sends: its history and the new user message.
        """
        if self.resume is not None:
            return (
                [*self.resume.messages, *self.tool_results],
                [*self.resume.added, *self.tool_results],
            )
        if self.conversation is not None:
            return [*system, *self.conversation], self.continued[1:]
        return default, []

    def opening_line(self, text: str) -> dict[str, Any]:
        """The message a new turn starts with in the store: the user's ``text``, or the first
        of the messages a stateless continuation :attr:`continued` (:meth:`opening` adds the
        others)."""
        return self.continued[0] if self.continued else {"role": "user", "content": text}
