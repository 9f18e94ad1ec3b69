"""The OpenAI chat-completions wire format, as pure functions: parse a request, render a
completion, its server-sent-event chunks, the model list and error objects.

Nothing here touches a socket or the gateway, so every rule is unit-tested on bytes
(tests/unit/test_openai_wire.py); :mod:`hermes_core.plugins.http` serves them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hermes_core.plugins import strict_json

#: The request header naming the session (hermes-core's extension to the API).
SESSION_HEADER = "X-Hermes-Session"
#: Message roles of the chat-completions API.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
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

    :ivar session_id: the session the client named (the session header, else ``user``);
        None when it named none.
    """

    text: str
    user: str | None
    model: str | None
    stream: bool
    session_id: str | None


def parse_chat(body: bytes, session_header: str | None = None) -> ChatRequest:
    """Validate a request body (and the session header); raises a 400 :class:`ApiError`
    saying what is wrong, with ``param`` naming the field."""
    data = _load_object(body)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list", "messages")
    last_user = None
    for index, item in enumerate(messages):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise bad_request(
                f"messages[{index}] must be an object with a string `role`", "messages"
            )
        if item["role"] not in ROLES:
            raise bad_request(
                f"messages[{index}].role must be one of {', '.join(ROLES)}, "
                f"got {item['role'][:40]!r}",
                "messages",
            )
        if item["role"] == "user":
            last_user = index
    if last_user is None:
        raise bad_request(
            'no user message in `messages`: the last message with role "user" is the input',
            "messages",
        )
    text = _text_of(messages[last_user].get("content"), last_user)
    if not text.strip():
        raise bad_request(f"messages[{last_user}] (the last user message) is empty", "messages")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("`stream` must be a boolean", "stream")
    user = data.get("user")
    if user is not None:
        user = _identifier(user, "`user`", "user")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("`model` must be a string", "model")
    return ChatRequest(text, user, model, bool(stream), _session_id(session_header, user))


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


def _text_of(content: Any, index: int) -> str:
    """The text of a message: a string, or the ``text`` parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_request(
                    f"messages[{index}].content: only text parts are supported, got {kind!r}",
                    "messages",
                )
            if not isinstance(part.get("text"), str):
                raise bad_request(
                    f"messages[{index}].content: a text part needs `text`", "messages"
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise bad_request(
        f"messages[{index}].content must be a string or a list of text parts", "messages"
    )


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


def completion(text: str, completion_id: str, created: int, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object answering with ``text``."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


def chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: Mapping[str, str],
    finish_reason: str | None = None,
) -> str:
    """One ``chat.completion.chunk`` server-sent event."""
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(body)}\n\n"


#: The event that ends every stream.
DONE = "data: [DONE]\n\n"


def model_list(models: Sequence[tuple[str, str]], created: int) -> dict[str, Any]:
    """The ``GET /v1/models`` list of ``(id, owner)`` pairs."""
    data = [
        {"id": model, "object": "model", "created": created, "owned_by": owner}
        for model, owner in models
    ]
    return {"object": "list", "data": data}
