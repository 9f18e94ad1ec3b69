"""What the scripted server can answer: the recorded request and the scripted outcomes.

:class:`hermes_core.testing.script.Script` picks one of these per request;
:mod:`hermes_core.testing.handler` plays it over HTTP.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Body fields of a request that are not parameters (:attr:`RecordedRequest.params`).
TRANSPORT_FIELDS = frozenset({"model", "messages", "tools", "stream", "stream_options"})


@dataclass
class RecordedRequest:
    """One chat-completions request, as received by :class:`FakeOpenAI`.

    Attributes:
        model: The requested model name.
        messages: The request's ``messages`` list, unmodified.
        tools: The request's ``tools`` list, or ``None`` when none were offered.
        stream: Whether the client asked for a streamed response.
        headers: Request headers, keyed by lower-cased header name.
        body: The whole decoded JSON body.
        received_at: When it was received (UNIX time).
        answered_at: When the server began sending its answer, after any scripted delay (None
            until then): two requests whose ``received_at``-``answered_at`` spans overlap were
            being served at the same time.
    """

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    stream: bool
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.time)
    answered_at: float | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The request's parameters: every body field but the conversation and transport
        ones (``model``, ``messages``, ``tools``, ``stream``, ``stream_options``), e.g.
        ``{"max_tokens": 3, "temperature": 0}``."""
        return {key: value for key, value in self.body.items() if key not in TRANSPORT_FIELDS}

    def summary(self) -> dict[str, Any]:
        """Return the JSON-friendly subset served by ``GET /_requests``."""
        return {
            "model": self.model,
            "messages": self.messages,
            "tools": self.tools,
            "stream": self.stream,
            "params": self.params,
        }


@dataclass(frozen=True)
class ErrorReply:
    """A scripted OpenAI error response."""

    status: int
    message: str
    type: str
    code: str | None
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """Return the OpenAI error envelope for this error."""
        return {
            "error": {"message": self.message, "type": self.type, "code": self.code, "param": None}
        }


@dataclass(frozen=True)
class Answer:
    """A scripted successful completion (possibly with tool calls or no choices at all).

    Streamed, the content goes out as ``pieces`` (default: word by word), one chunk every
    ``chunk_delay_s``; with ``stall_after`` the stream stops after that many content chunks
    and never ends. ``streams=False`` refuses ``"stream": true`` with a 400.
    """

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    no_choices: bool = False
    pieces: tuple[str, ...] | None = None
    chunk_delay_s: float = 0.0
    stall_after: int | None = None
    streams: bool = True
    #: Why the answer ended, when not the usual (``length``: cut at ``max_tokens``).
    finish: str | None = None

    def stream_pieces(self) -> list[str]:
        """The content as it is streamed; the pieces concatenated are the content."""
        return list(self.pieces) if self.pieces is not None else words(self.content or "")

    @property
    def finish_reason(self) -> str:
        """OpenAI's finish reason for this answer."""
        return self.finish or ("tool_calls" if self.tool_calls else "stop")


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (or until the server stops), then produce ``then``."""

    seconds: float
    then: Answer


class Hang:
    """Never answer; drop the connection once the server stops."""


class Garbage:
    """Answer 200 ``application/json`` with a body that is not JSON."""


class Html:
    """Answer 200 with an HTML page, as a misconfigured proxy or captive portal does."""


@dataclass(frozen=True)
class Truncated:
    """Promise the whole completion for ``then`` in ``Content-Length``, send half, close."""

    then: Answer


Outcome = ErrorReply | Answer | Delay | Hang | Garbage | Html | Truncated
HTML_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"


def segment(model: str, position: int = 1) -> str | None:
    """Return a ``-``-separated part of ``model`` (position 1: ``"2"`` in ``flaky-2-x``)."""
    parts = model.split("-", position + 1)
    return parts[position] if len(parts) > position else None


def non_negative_float(text: str | None) -> float | None:
    """Parse ``text`` as a finite float >= 0, or return ``None``."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def text_of(content: Any) -> str:
    """Extract the text of a message ``content`` (a string, or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return " ".join(texts)
    return ""


def echo(model: str, messages: list[dict[str, Any]]) -> str:
    """Build the ``ok-*`` answer: model, last user text and number of user messages."""
    user_texts = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    last = user_texts[-1] if user_texts else ""
    return f"[{model}] {last} (user messages: {len(user_texts)})"


def tool_name(tool: Any) -> str | None:
    """Return the function name of one entry of a request's ``tools``, if it has one."""
    if isinstance(tool, dict):
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return name
    return None


def resolve_tool(requested: str, offered: list[str]) -> str:
    """Map a directive's tool name onto an offered one.

    MCP-style servers prefix tools as ``server__tool``, so ``get_time`` matches
    ``srv__get_time``. An unknown name is returned unchanged so tests can exercise the
    agent's handling of calls to tools it never offered.
    """
    if requested in offered:
        return requested
    for name in offered:
        if name.endswith("__" + requested):
            return name
    return requested


def usage(messages: list[dict[str, Any]], answer: Answer) -> dict[str, int]:
    """Rough word-count token usage; only needs to be plausible small integers."""
    prompt = sum(len(text_of(m.get("content")).split()) + 1 for m in messages)
    completion = len((answer.content or "").split()) + sum(
        len(call["function"]["arguments"]) // 4 + 1 for call in answer.tool_calls
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def words(text: str) -> list[str]:
    """Split ``text`` into word-sized pieces whose concatenation is exactly ``text``."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def split_evenly(text: str, count: int) -> tuple[str, ...]:
    """``text`` cut into ``count`` non-empty pieces (fewer if it is shorter), in order."""
    count = max(1, min(count, len(text)))
    return tuple(text[len(text) * i // count : len(text) * (i + 1) // count] for i in range(count))
