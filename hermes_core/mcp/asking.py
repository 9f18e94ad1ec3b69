"""Asking a chat user a question on an MCP server's behalf (elicitation): the typed API a
platform implements, and which session's run is calling a tool.

A platform that can ask registers an :class:`Asker` with ``gateway.askers`` when it starts;
the gateway marks each run with :func:`running_session`, so a server's ``elicitation/create``
that arrives while one of the run's tool calls is in flight reaches that session's user.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from hermes_core.types import Session


@dataclass(frozen=True)
class Question:
    """One question for the user: an MCP server asks for one value.

    :ivar server: the MCP server asking.
    :ivar text: what to show: the server's message and what the value is for.
    :ivar timeout_s: how long the answer is waited for; the asker may say so.
    """

    server: str
    text: str
    timeout_s: float


class Asker(Protocol):
    """What a platform implements to ask its users (``gateway.askers.register``)."""

    async def ask(self, session_key: str, question: Question) -> str | None:
        """Show ``question`` to the user of session ``session_key`` and return their answer,
        or None when they gave none (the request is then declined). The caller bounds the
        wait by ``question.timeout_s``, cancelling this coroutine: tell the user then that
        the question expired, so they know their next message is not taken as the answer.
        Do not raise for a user who does not answer."""
        ...


class Askers:
    """The platforms that can ask, by platform name."""

    def __init__(self) -> None:
        self._by_platform: dict[str, Asker] = {}

    def register(self, platform: str, asker: Asker) -> None:
        self._by_platform[platform] = asker

    def unregister(self, platform: str) -> None:
        self._by_platform.pop(platform, None)

    def get(self, platform: str) -> Asker | None:
        return self._by_platform.get(platform)


#: The session whose run is executing (so, whose tool calls are in flight) in this context.
current_session: ContextVar[Session | None] = ContextVar("hermes_core_session", default=None)


@contextlib.contextmanager
def running_session(session: Session) -> Iterator[None]:
    """Mark the run of ``session`` for the tool calls it makes (and the tasks they start)."""
    token = current_session.set(session)
    try:
        yield
    finally:
        current_session.reset(token)
