"""A server's ``elicitation/create``, asked of the user whose tool call caused it.

The connection records each tool call in flight with the session whose run made it
(:data:`~hermes_core.mcp.asking.current_session`). A request that arrives while calls of
exactly one session are in flight is asked on that session's platform, one question per
requested value, each answer bounded by ``elicitation.timeout_s``. Otherwise, or when the
platform cannot ask, the request is declined, and the tool result the model reads says why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core.mcp.asking import Asker, Askers, Question, current_session
from hermes_core.mcp.features import ElicitationSettings
from hermes_core.types import Session

if TYPE_CHECKING:
    from mcp_types import ElicitRequestParams, ElicitResult

PAST = {"decline": "declined", "cancel": "cancelled"}
YES = frozenset({"y", "yes", "true", "1", "on"})
NO = frozenset({"n", "no", "false", "0", "off"})


@dataclass(eq=False)
class Call:
    """One tool call in flight: whose run made it, and what the model should be told."""

    session: Session | None
    notes: list[str] = field(default_factory=list)


class CallsInFlight:
    """A server's tool calls in flight (to tell whose user a request is for)."""

    def __init__(self) -> None:
        self.calls: set[Call] = set()

    @contextlib.contextmanager
    def call(self) -> Iterator[Call]:
        call = Call(current_session.get())
        self.calls.add(call)
        try:
            yield call
        finally:
            self.calls.discard(call)

    def note(self, text: str) -> None:
        """Tell the model, in the results of the calls in flight."""
        for call in self.calls:
            call.notes.append(text)


@dataclass(eq=False)
class Elicitor:
    """One server's ``elicitation_callback``."""

    server: str
    settings: ElicitationSettings
    askers: Askers
    calls: CallsInFlight

    async def __call__(self, context: object, params: ElicitRequestParams) -> ElicitResult:
        from mcp_types import ElicitRequestURLParams

        sessions = {c.session.key: c.session for c in self.calls.calls if c.session is not None}
        if len(sessions) != 1:
            return self._decline("no single conversation's tool call was waiting for it")
        (session,) = sessions.values()
        asker = self.askers.get(session.platform)
        if asker is None:
            return self._decline(f"platform {session.platform!r} cannot ask the user")
        if isinstance(params, ElicitRequestURLParams):
            opened = await self._ask(
                asker,
                session,
                f"MCP server {self.server!r} asks: {params.message}\n"
                f"Open {params.url}, then answer ok:",
            )
            return _result("accept", None) if isinstance(opened, str) else opened
        properties: dict[str, Any] = params.requested_schema.get("properties", {})
        content: dict[str, Any] = {}
        for name, schema in properties.items():
            answer = await self._ask(
                asker, session, self._text(params.message, name, schema, properties)
            )
            if not isinstance(answer, str):
                return answer
            value = _coerce(answer, schema)
            if value is None:
                return self._decline(f"the answer for {name!r} is not {_expected(schema)}")
            content[name] = value
        return _result("accept", content)

    async def _ask(self, asker: Asker, session: Session, text: str) -> str | ElicitResult:
        """The user's answer, stripped, or the result that ends the request without one."""
        question = Question(self.server, text, self.settings.timeout_s)
        try:
            answer = await asyncio.wait_for(asker.ask(session.key, question), question.timeout_s)
        except TimeoutError:
            return self._decline(
                f"the user did not answer within {self.settings.timeout_s:g}s", "cancel"
            )
        if not answer or not answer.strip():
            return self._decline("the user gave no answer")
        return answer.strip()

    def _text(self, message: str, name: str, schema: dict[str, Any], every: dict[str, Any]) -> str:
        detail = schema.get("description") or schema.get("title") or ""
        if len(every) == 1 and not detail:
            return f"MCP server {self.server!r} asks: {message}"
        hint = f" ({detail})" if detail else ""
        return f"MCP server {self.server!r} asks: {message}\n{name}{hint}:"

    def _decline(self, why: str, action: str = "decline") -> ElicitResult:
        note = (
            f"[hermes-core: MCP server {self.server!r} asked the user for input; {why}, "
            f"so it was {PAST[action]}]"
        )
        logger.info("{}", note)
        self.calls.note(note)
        return _result(action, None)


def _result(action: str, content: dict[str, Any] | None) -> ElicitResult:
    from mcp_types import ElicitResult

    return ElicitResult.model_validate({"action": action, "content": content})


def _expected(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    return {"integer": "an integer", "number": "a number", "boolean": "yes or no"}.get(
        schema.get("type", "string"), "text"
    )


def _coerce(answer: str, schema: dict[str, Any]) -> Any:
    """``answer`` as the type ``schema`` asks for, or None when it is not one."""
    kind = schema.get("type", "string")
    if "enum" in schema:
        return answer if answer in schema["enum"] else None
    if kind == "boolean":
        lowered = answer.lower()
        return True if lowered in YES else False if lowered in NO else None
    if kind in ("integer", "number"):
        try:
            return int(answer) if kind == "integer" else float(answer)
        except ValueError:
            return None
    return answer
