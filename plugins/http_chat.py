"""A chat-completions request as a run, and the run's reply as a completion.

:class:`ChatRuns` turns a parsed request into a :class:`~hermes_core.types.Message` carrying
its :class:`~hermes_core.run_request.RunRequest`: the two session modes, the operator's
parameter policy, the client's tools, and the suspended runs their results continue (it owns
:class:`~hermes_core.client_tools.SuspendedRuns`). :func:`completion_body` and :func:`sse`
render the reply, tool calls, finish reason and usage included.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from hermes_core.client_tools import SuspendedRuns, name_clash
from hermes_core.events import Fallback, RunEvent, RunFinished, RunStarted, TextDelta
from hermes_core.gateway import Gateway
from hermes_core.platforms import session_key, session_owner
from hermes_core.plugins import openai_wire as wire
from hermes_core.plugins.http_params import ParamProblem
from hermes_core.plugins.http_settings import NAME, HttpSettings
from hermes_core.providers import ToolCall
from hermes_core.run_request import RunRequest, Suspension
from hermes_core.types import Message, Reply, new_id

#: The session id of a stateless conversation starts so (a client cannot name one so).
STATELESS = "stateless:"


@dataclass(frozen=True)
class ChatRun:
    """One request's message, and the session id its response names (None: stateless)."""

    message: Message
    request: RunRequest
    session_id: str | None


def _calls_key(owner: str | None, ids: Iterable[str]) -> str:
    """Where a stateless run waits: under the API key's name and the ids of the calls the
    client answers, so no other key's client can resume it."""
    return f"calls:{owner or ''}:" + "\x00".join(sorted(ids))


def _ordered_results(resume: Suspension, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The client's results for ``resume``'s calls, in the model's order; a 400 names a
    call left unanswered."""
    by_id = {result["tool_call_id"]: result for result in results}
    missing = [call.id for call in resume.client_calls if call.id not in by_id]
    if missing:
        raise wire.bad_request(
            f"no tool result for call {missing[0]!r}: answer every call of the last reply",
            "messages",
        )
    return [by_id[call.id] for call in resume.client_calls]


def _continued_turn(messages: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    """The turn a stateless continuation no run waits for continues: its messages after the
    last user (or system) message. It must end with the assistant message whose
    ``tool_calls`` the results answer, then those results: the model is sent them all."""
    start = len(messages)
    while start > 0 and messages[start - 1]["role"] in ("assistant", "tool"):
        start -= 1
    calling = messages[-len(ids) - 1] if len(messages) - len(ids) > start else {}
    called = {call["id"] for call in calling.get("tool_calls") or []}
    if calling.get("role") != "assistant" or not called.issuperset(ids):
        raise wire.bad_request(
            "the request ends with tool results, but no run is waiting for them and they do "
            "not follow the assistant message whose tool_calls they answer; send the "
            "conversation with that message",
            "messages",
        )
    return messages[start:]


class ChatRuns:
    """Builds each request's run, and keeps the runs waiting for client tool results."""

    def __init__(self, gateway: Gateway, settings: HttpSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.suspended = SuspendedRuns(
            max_runs=settings.max_suspended_runs,
            max_age_s=settings.suspended_run_ttl_s,
            end=self._fail,
        )

    async def _fail(self, run: Suspension) -> None:
        """A suspended run nobody continues ends failed in the store, not ``pending`` (which
        says the process died during it)."""
        await self.gateway.sessions.fail_run(
            run.session_key, NAME, run.run_id, stateless=run.stateless
        )

    async def prepare(self, chat: wire.ChatRequest, owner: str | None) -> ChatRun:
        """The run of ``chat``, from the API key ``owner``; raises a 400 :class:`ApiError`."""
        try:
            params = self.settings.parameters.apply(chat.params)
        except ParamProblem as problem:
            raise wire.bad_request(str(problem), problem.param) from None
        if chat.session_id is not None and chat.session_id.startswith(STATELESS):
            raise wire.bad_request(
                f"session ids starting with {STATELESS!r} are reserved for stateless requests",
                wire.SESSION_HEADER,
            )
        request = RunRequest(params, client_tools=chat.tools)
        if chat.tools:
            toolset = await self.gateway.tools.offered()
            names = (tool["function"]["name"] for tool in chat.tools)
            if (clash := name_clash(list(names), toolset)) is not None:
                raise wire.bad_request(
                    f"the tool {clash!r} clashes with a tool of the gateway; rename yours",
                    "tools",
                )
        if chat.session_id is None:
            key = self._stateless(chat, request, owner)
        else:
            key = session_key(NAME, chat.session_id, owner)
            self._continue_session(chat, request, key)
        text = request.resume.user_message["content"] if request.resume else chat.text
        user = chat.user or chat.session_id or key
        message = Message(text, NAME, key, user, request=request)
        return ChatRun(message, request, chat.session_id)

    def _stateless(self, chat: wire.ChatRequest, request: RunRequest, owner: str | None) -> str:
        """Set up ``request`` for a stateless conversation; returns its session key."""
        request.stateless, request.record = True, self.settings.record_stateless
        ids = [result["tool_call_id"] for result in chat.tool_results]
        resume = self.suspended.take(_calls_key(owner, ids)) if ids else None
        if resume is None:  # the messages sent are the whole conversation
            request.conversation = chat.messages
            if ids:  # the store has the turn's user message: what follows it is new
                request.continued = _continued_turn(chat.messages, ids)
            return session_key(NAME, f"{STATELESS}{new_id()}", owner)
        request.resume, request.tool_results = resume, _ordered_results(resume, chat.tool_results)
        return resume.session_key

    def _continue_session(self, chat: wire.ChatRequest, request: RunRequest, key: str) -> None:
        """Resume the session's suspended run with the request's tool results; a new user
        message abandons it instead (its turn never reached the history)."""
        if not chat.tool_results:
            self.suspended.abandon(key)
            return
        resume = self.suspended.take(key)
        if resume is None:
            raise wire.bad_request(
                "the request ends with tool results, but no run of this session is waiting "
                "for them (none was suspended, or it expired: platforms.http."
                "suspended_run_ttl_s)",
                "messages",
            )
        try:
            request.tool_results = _ordered_results(resume, chat.tool_results)
        except wire.ApiError:
            self.suspended.put(key, resume)  # a client's mistake: it may answer again
            raise
        request.resume = resume

    def keep(self, request: RunRequest) -> None:
        """After the run: keep it when it waits for the client's tool results."""
        suspension = request.outcome.suspension
        if suspension is None:
            return
        if request.stateless:
            key = _calls_key(session_owner(suspension.session_key), suspension.call_ids)
        else:
            key = suspension.session_key
        self.suspended.put(key, suspension)


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _client_calls(request: RunRequest) -> list[ToolCall]:
    suspension = request.outcome.suspension
    return list(suspension.client_calls) if suspension is not None else []


def _finish_reason(reply: Reply, request: RunRequest) -> str:
    if _client_calls(request):
        return "tool_calls"
    if reply.result is None or reply.result["failed"]:
        return "stop"
    return request.outcome.finish_reason or "stop"


def new_head(model: str) -> wire.Head:
    return wire.Head(f"chatcmpl-{new_id()}", int(time.time()), model)


def answered_by(reply: Reply, fallback: str) -> str:
    """The model that answered; a command's reply has none."""
    return (reply.result and reply.result["model"]) or fallback


def completion_body(reply: Reply, request: RunRequest, model: str) -> dict[str, Any]:
    """The ``chat.completion`` object of ``reply``."""
    calls = [_tool_call(call) for call in _client_calls(request)]
    return wire.completion(
        new_head(answered_by(reply, model)),
        (reply.text or None) if calls else reply.text,
        finish_reason=_finish_reason(reply, request),
        usage=reply.result["usage"] if reply.result else None,
        tool_calls=calls,
    )


async def sse(
    events: AsyncIterator[RunEvent],
    model: str,
    runs: ChatRuns,
    request: RunRequest,
    include_usage: bool,
) -> AsyncIterator[str]:
    """A run's events as ``chat.completion.chunk`` events; ``model`` follows the run (its
    primary, then each fallback, then the model that answered)."""
    head = new_head(model)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return wire.chunk(
            wire.Head(head.id, head.created, model), delta, finish_reason, with_usage=include_usage
        )

    opened = False  # the role chunk goes first, once the run has named its model
    async for event in events:
        out: list[str] = []
        if isinstance(event, RunStarted):
            model = event.model
        elif isinstance(event, Fallback):
            model = event.to_model
        elif isinstance(event, TextDelta):
            out.append(chunk({"content": event.text}))
        elif isinstance(event, RunFinished):
            reply = event.reply
            model = answered_by(reply, model)
            runs.keep(request)
            for index, call in enumerate(_client_calls(request)):
                out.append(chunk({"tool_calls": [{"index": index, **_tool_call(call)}]}))
            out.append(chunk({}, _finish_reason(reply, request)))
            if include_usage:
                usage = (reply.result and reply.result["usage"]) or wire.NO_USAGE
                final = wire.Head(head.id, head.created, model)
                out.append(wire.chunk(final, None, usage=usage, with_usage=True))
        if out and not opened:
            opened = True
            yield chunk({"role": "assistant", "content": ""})
        for text in out:
            yield text
    yield wire.DONE
