"""The OpenAI chat-completions wire format, as pure functions: parse a request, render a
completion, its server-sent-event chunks, the model list and error objects.

Nothing here touches a socket or the gateway, so every rule is unit-tested on bytes
(tests/unit/test_openai_wire.py); :mod:`hermes_core.plugins.http` serves them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hermes_core import __version__
from hermes_core.plugins import http_params, openai_messages, strict_json

#: The request header naming the session (hermes-core's extension to the API).
SESSION_HEADER = "X-Hermes-Session"
#: Longest accepted session id or ``user`` value.
MAX_ID_LENGTH = 256

_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")


# --- errors --------------------------------------------------------------------------------


class ApiError(Exception):
    """A request the API refuses; rendered as an OpenAI error object by :meth:`body`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, dict(headers or {})

    def body(self) -> bytes:
        """``{"error": {"message", "type", "param", "code"}}``, ASCII-escaped so that text
        quoted from a client (even a lone surrogate) cannot break the encoding."""
        error = {"message": self.message, "type": self.type, "param": self.param}
        return json.dumps({"error": {**error, "code": self.code}}).encode()


def bad_request(message: str, param: str | None = None) -> ApiError:
    """A 400 ``invalid_request`` error."""
    return ApiError(400, message, param=param, code="invalid_request")


def check_content_type(declared: str | None) -> None:
    """Refuse (415) a body declared as anything but JSON, such as ``curl -d``'s form encoding.

    A request without ``Content-Type`` is read as JSON: a declared type is the only mistake
    worth refusing.
    """
    if declared is None:
        return
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            415,
            f"unsupported Content-Type {declared[:60]!r}: send the body as application/json",
            code="unsupported_media_type",
        )


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    """What hermes-core uses from a chat-completions request.

    :ivar text: the last user message's text: a session's new input.
    :ivar session_id: the session the client named (the session header, else ``user``);
        None when it named none (a stateless conversation).
    :ivar messages: every message, normalised: a stateless conversation's history.
    :ivar tool_results: the ``role: "tool"`` messages ending ``messages``: results of the
        client tools a suspended run called.
    :ivar params: the parameters forwarded to the upstream (:mod:`http_params`).
    :ivar tools: the client's own tools.
    """

    text: str
    user: str | None
    model: str | None
    stream: bool
    session_id: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    include_usage: bool = False


def parse_chat(body: bytes, session_header: str | None = None) -> ChatRequest:
    """Validate a request body (and the session header); raises a 400 :class:`ApiError`
    saying what is wrong, with ``param`` naming the field."""
    data = _load_object(body)
    try:
        messages = openai_messages.conversation(data.get("messages"))
        tools = openai_messages.client_tools(data.get("tools"))
        params = http_params.request_params(data)
    except http_params.ParamProblem as problem:
        raise bad_request(str(problem), problem.param) from None
    results = openai_messages.trailing_tool_results(messages)
    users = [index for index, item in enumerate(messages) if item["role"] == "user"]
    if not users and not results:
        raise bad_request(
            'no user message in `messages`: the last message with role "user" is the input',
            "messages",
        )
    text = messages[users[-1]]["content"] if users else ""
    if not results and not text.strip():
        raise bad_request(f"messages[{users[-1]}] (the last user message) is empty", "messages")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("`stream` must be a boolean", "stream")
    user = data.get("user")
    if user is not None:
        user = _identifier(user, "`user`", "user")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("`model` must be a string", "model")
    return ChatRequest(
        text,
        user,
        model,
        bool(stream),
        _session_id(session_header, user),
        messages,
        results,
        params,
        tools,
        _include_usage(data.get("stream_options"), bool(stream)),
    )


def _include_usage(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise bad_request("`stream_options` is only allowed with `stream: true`", "stream_options")
    include = options.get("include_usage", False) if isinstance(options, dict) else None
    if not isinstance(include, bool):
        raise bad_request(
            "`stream_options` must be an object with a boolean `include_usage`", "stream_options"
        )
    return include


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        data = strict_json.loads(body)
    except strict_json.JsonProblem as problem:
        raise bad_request(str(problem), problem.field) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise bad_request(f"request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    return data


def _identifier(value: Any, what: str, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{what} must be a non-empty string", param)
    if len(value) > MAX_ID_LENGTH or not _PRINTABLE.match(value):
        raise bad_request(
            f"{what} must be at most {MAX_ID_LENGTH} printable characters, got {value[:40]!r}",
            param,
        )
    return value


def _session_id(header: str | None, user: str | None) -> str | None:
    if header is not None:
        return _identifier(header, f"the {SESSION_HEADER} header", SESSION_HEADER)
    if user is not None:
        # The response names the session in a header, and headers are Latin-1.
        try:
            user.encode("latin-1")
        except UnicodeEncodeError:
            raise bad_request(
                f"`user` names the session, which the response returns in the "
                f"{SESSION_HEADER} header, so it must be Latin-1 text; send a Latin-1 "
                f"{SESSION_HEADER} header to name the session instead",
                "user",
            ) from None
    return user


# --- responses -----------------------------------------------------------------------------


#: What ``system_fingerprint`` says: the gateway and its version answered.
SYSTEM_FINGERPRINT = f"hermes-core-{__version__}"
#: ``usage`` of a reply no upstream counted (a command's, a plugin's, a failure before any).
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@dataclass(frozen=True)
class Head:
    """What every object of one response repeats: its id, creation time and model."""

    id: str
    created: int
    model: str


def completion(
    head: Head,
    text: str | None,
    *,
    finish_reason: str = "stop",
    usage: Mapping[str, object] | None = None,
    tool_calls: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A ``chat.completion`` object answering with ``text`` (and ``tool_calls``)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [dict(call) for call in tool_calls]
    return {
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": dict(usage or NO_USAGE),
    }


def chunk(
    head: Head,
    delta: Mapping[str, Any] | None,
    finish_reason: str | None = None,
    *,
    usage: Mapping[str, object] | None = None,
    with_usage: bool = False,
) -> str:
    """One ``chat.completion.chunk`` server-sent event; ``delta=None`` is the usage chunk
    (empty ``choices``). With ``with_usage`` every chunk has a ``usage`` key, null but on the
    last, as OpenAI sends them for ``stream_options.include_usage``."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}]
    )
    body: dict[str, Any] = {
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
    }
    if with_usage:
        body["usage"] = None if usage is None else dict(usage)
    return f"data: {json.dumps(body)}\n\n"


#: The event that ends every stream.
DONE = "data: [DONE]\n\n"


def model_object(model: str, owner: str, created: int) -> dict[str, Any]:
    """One ``model`` object of ``GET /v1/models`` and ``GET /v1/models/{id}``."""
    return {"id": model, "object": "model", "created": created, "owned_by": owner}


def model_list(models: Sequence[tuple[str, str]], created: int) -> dict[str, Any]:
    """The ``GET /v1/models`` list of ``(id, owner)`` pairs."""
    return {"object": "list", "data": [model_object(m, owner, created) for m, owner in models]}


def unknown_model(model: str) -> ApiError:
    """The 404 OpenAI answers for a model it does not serve."""
    return ApiError(
        404,
        f"The model {model[:100]!r} does not exist: GET /v1/models lists the served ones",
        param="model",
        code="model_not_found",
    )
