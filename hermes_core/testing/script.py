"""The script: which outcome a chat-completions request gets, chosen by its model name.

The table :data:`PREFIXES` maps each model-name prefix to the function that builds its
outcome; the module docstring of :mod:`hermes_core.testing.openai_server` documents them.
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from hermes_core.testing.outcomes import (
    Answer,
    Delay,
    ErrorReply,
    Garbage,
    Hang,
    Html,
    Outcome,
    RecordedRequest,
    Truncated,
    echo,
    non_negative_float,
    resolve_tool,
    segment,
    split_evenly,
    text_of,
    tool_name,
    usage,
    words,
)

_DEFAULT_RATELIMIT_SECONDS = "1"
_DEFAULT_SLOW_SECONDS = 2.0
_DEFAULT_FLAKY_FAILURES = 1
_DEFAULT_STREAM_CHUNKS = 10
_DEFAULT_STREAM_DELAY_MS = 100.0
_DEFAULT_STALL_CHUNKS = 2
_INVALID_TOOL_ARGUMENTS = "{not json"

_CALL_RE = re.compile(r"call\s+(\S+)(?:\s+(.*))?", re.DOTALL)
_CALL_MANY_RE = re.compile(r"call-many((?:\s+\S+)+)\s*", re.DOTALL)


def _count(text: str | None, default: int) -> int:
    return int(text) if text is not None and text.isdigit() else default


def _error(status: int, message: str, kind: str, code: str | None) -> ErrorReply:
    return ErrorReply(status, message, kind, code)


def _retry_after(text: str | None) -> str:
    """The ``Retry-After`` a ``ratelimit-S-*`` model sends: a number of seconds as given,
    ``date`` for an HTTP date one second ahead, ``soon`` verbatim (unparsable)."""
    if text == "date":
        return email.utils.formatdate(time.time() + 1, usegmt=True)
    if text == "soon" or (text is not None and non_negative_float(text) is not None):
        # Echo the text as given so tests can compare the header verbatim.
        return text
    return _DEFAULT_RATELIMIT_SECONDS


def _ratelimit(script: Script, request: RecordedRequest) -> Outcome:
    retry_after = _retry_after(segment(request.model))
    return ErrorReply(
        429,
        f"Rate limit reached for {request.model}. Please try again in {retry_after}s.",
        "rate_limit_error",
        "rate_limit_exceeded",
        {"Retry-After": retry_after},
    )


def _slow(script: Script, request: RecordedRequest) -> Outcome:
    seconds = non_negative_float(segment(request.model))
    return Delay(
        _DEFAULT_SLOW_SECONDS if seconds is None else seconds,
        Answer(echo(request.model, request.messages)),
    )


def _stream(script: Script, request: RecordedRequest) -> Outcome:
    """``stream-N-MS-*``: the ``ok-*`` text in N chunks, MS milliseconds apart."""
    chunks = _count(segment(request.model), _DEFAULT_STREAM_CHUNKS)
    delay_ms = non_negative_float(segment(request.model, 2))
    text = echo(request.model, request.messages)
    return Answer(
        text,
        pieces=split_evenly(text, chunks),
        chunk_delay_s=(_DEFAULT_STREAM_DELAY_MS if delay_ms is None else delay_ms) / 1000,
    )


def _stall(script: Script, request: RecordedRequest) -> Outcome:
    """``stall-N-*``: streams N chunks of the ``ok-*`` text, then nothing, never ending."""
    if not request.stream:
        return Hang()
    text = echo(request.model, request.messages)
    chunks = _count(segment(request.model), _DEFAULT_STALL_CHUNKS)
    return Answer(text, pieces=split_evenly(text, chunks + 1), stall_after=chunks)


def _answer(script: Script, request: RecordedRequest) -> Outcome:
    return Answer(echo(request.model, request.messages))


def _say(script: Script, request: RecordedRequest) -> Outcome:
    """``say-*``: the last user text, verbatim (a test's way to script JSON output)."""
    users = [text_of(m.get("content")) for m in request.messages if m.get("role") == "user"]
    return Answer(users[-1] if users else "")


def within_max_tokens(request: RecordedRequest, outcome: Outcome) -> Outcome:
    """A text answer longer than the request's ``max_tokens`` (or ``max_completion_tokens``)
    words, cut to that many with finish reason ``length``, as a real model does."""
    limit = request.body.get("max_completion_tokens") or request.body.get("max_tokens")
    if not (isinstance(outcome, Answer) and isinstance(limit, int) and outcome.content):
        return outcome
    pieces = words(outcome.content)
    if len(pieces) <= limit:
        return outcome
    return dataclasses.replace(
        outcome, content="".join(pieces[:limit]), finish="length", pieces=None
    )


#: Model-name prefix -> the outcome of a request for it. ``notfound`` and unknown names
#: share the 404 of :meth:`Script.plan`.
PREFIXES: dict[str, Callable[[Script, RecordedRequest], Outcome]] = {
    "ok": _answer,
    "say": _say,
    "bad": lambda s, r: _error(
        400,
        f"The model `{r.model}` does not exist or is invalid",
        "invalid_request_error",
        "model_not_found",
    ),
    "auth": lambda s, r: _error(
        401,
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    "authecho": lambda s, r: _error(
        401,
        "Incorrect API key provided: "
        f"{r.headers.get('authorization', '').removeprefix('Bearer ')}. You can find your API "
        "key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    "forbidden": lambda s, r: _error(
        403,
        f"You are not allowed to use the model `{r.model}`.",
        "permission_error",
        "permission_denied",
    ),
    "ratelimit": _ratelimit,
    "quota": lambda s, r: _error(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
    ),
    "error500": lambda s, r: _error(
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    "flaky": lambda s, r: s.flaky(r),
    "slow": _slow,
    "hang": lambda s, r: Hang(),
    "garbage": lambda s, r: Garbage(),
    "nochoices": lambda s, r: Answer(None, no_choices=True),
    "empty": lambda s, r: Answer(None),
    "html": lambda s, r: Html(),
    "truncated": lambda s, r: Truncated(Answer(echo(r.model, r.messages))),
    "tool": lambda s, r: s.tool_answer(r, valid_arguments=True),
    "badtool": lambda s, r: s.tool_answer(r, valid_arguments=False),
    "stream": _stream,
    "stall": _stall,
    "nostream": lambda s, r: Answer(echo(r.model, r.messages), streams=False),
}


class Script:
    """The scripted state shared by every request: ``flaky-*`` counts and the id counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flaky_counts: dict[str, int] = {}
        self._counter = 0

    def reset(self) -> None:
        """Forget the ``flaky-*`` counts, as if the server were new."""
        with self._lock:
            self._flaky_counts.clear()

    def next_number(self) -> int:
        """Return the next value of the per-instance counter behind all generated ids."""
        with self._lock:
            self._counter += 1
            return self._counter

    def plan(self, request: RecordedRequest) -> Outcome:
        """Decide the outcome of a chat-completions request from its model name."""
        # "ok" and "ok-primary" are ok-*; "okay" is unknown.
        build = PREFIXES.get(request.model.split("-", 1)[0])
        if build is not None:
            return within_max_tokens(request, build(self, request))
        return ErrorReply(
            404,
            f"The model `{request.model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    def flaky(self, request: RecordedRequest) -> Outcome:
        """Fail the first N requests for this exact model name with 503, then answer."""
        failures = _count(segment(request.model), _DEFAULT_FLAKY_FAILURES)
        with self._lock:
            attempt = self._flaky_counts.get(request.model, 0) + 1
            self._flaky_counts[request.model] = attempt
        if attempt <= failures:
            return ErrorReply(
                503,
                f"The server is overloaded (flaky attempt {attempt} of {failures} fails).",
                "server_error",
                "service_unavailable",
            )
        return Answer(echo(request.model, request.messages))

    def tool_answer(self, request: RecordedRequest, *, valid_arguments: bool) -> Answer:
        """Script a ``tool-*`` / ``badtool-*`` answer.

        * Trailing ``tool`` messages (results fed back) are answered with
          ``tool results: <r1> | <r2> ...``.
        * Otherwise, if tools are offered, the last user text picks the call:
          ``call <name> [<json>]`` calls one tool (arguments verbatim, ``{}`` if absent),
          ``call-many <n1> <n2> ...`` calls several with ``{}``, and anything else calls
          the first offered tool with ``{}``. Names resolve via :func:`resolve_tool`.
        * With no tools offered it answers like ``ok-*``.

        ``valid_arguments=False`` replaces every ``arguments`` string with invalid JSON.
        """
        messages = request.messages
        results: list[str] = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.append(text_of(message.get("content")))
        if results:
            return Answer("tool results: " + " | ".join(reversed(results)))

        offered = [name for name in map(tool_name, request.tools or []) if name is not None]
        if not offered:
            return Answer(echo(request.model, messages))

        user_texts = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        directive = user_texts[-1].strip() if user_texts else ""
        calls: list[tuple[str, str]]
        if many := _CALL_MANY_RE.fullmatch(directive):
            calls = [(resolve_tool(name, offered), "{}") for name in many.group(1).split()]
        elif one := _CALL_RE.fullmatch(directive):
            arguments = (one.group(2) or "").strip() or "{}"
            calls = [(resolve_tool(one.group(1), offered), arguments)]
        else:
            calls = [(offered[0], "{}")]

        tool_calls = [
            {
                "id": f"call_{self.next_number()}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if valid_arguments else _INVALID_TOOL_ARGUMENTS,
                },
            }
            for name, arguments in calls
        ]
        return Answer(None, tool_calls)

    def completion(self, request: RecordedRequest, answer: Answer) -> dict[str, Any]:
        """Build a non-streamed ``chat.completion`` object for ``answer``."""
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        choices = (
            []
            if answer.no_choices
            else [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ]
        )
        return {
            "id": f"chatcmpl-{self.next_number()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": choices,
            "usage": usage(request.messages, answer),
        }
