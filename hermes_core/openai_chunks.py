"""Chat-completions responses decoded into :mod:`hermes_core.providers` objects.

A whole response becomes a :class:`Completion`; a stream's server-sent events become text
deltas as they arrive, tool calls assembled from their fragments, and the finished
completion with its finish reason and usage. Plain dicts and JSON decoding throughout:
building the SDK's pydantic models cost more CPU than the rest of a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hermes_core import json_codec
from hermes_core.providers import (
    Completion,
    ProviderError,
    StreamEvent,
    StreamFinished,
    TextDelta,
    ToolCall,
    ToolCallReady,
    Usage,
)

#: The payload that ends an OpenAI stream.
DONE = b"[DONE]"


def malformed(where: str, problem: str) -> ProviderError:
    return ProviderError("server", f"malformed response from {where}: {problem}")


def _decode(body: bytes, where: str) -> Any:
    try:
        return json_codec.loads(body)
    except ValueError as error:
        raise malformed(where, str(error)) from None


def _tool_calls(message: dict[str, Any]) -> list[ToolCall]:
    calls = message.get("tool_calls") or []
    return [
        ToolCall(
            id=str(call.get("id") or ""),
            name=str(call["function"].get("name") or ""),
            arguments=str(call["function"].get("arguments") or ""),
        )
        for call in calls
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    ]


def completion_from_body(body: bytes, content_type: str, where: str) -> Completion:
    """The completion in a non-streamed response body from ``where`` (``provider:model``)."""
    if "json" not in content_type:  # a proxy's error page, a captive portal
        text = " ".join(body.decode(errors="replace").split())[:80]
        raise malformed(where, f"not JSON: {text!r}")
    response = _decode(body, where)
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices, list):
        raise malformed(where, "no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise malformed(where, f"choice without a message: {choice!r}"[:200])
    content, calls = message.get("content"), _tool_calls(message)
    if content is None and not calls:
        raise malformed(where, "empty message")
    if content is not None and not isinstance(content, str):
        raise malformed(where, f"content {content!r}"[:200])
    finish_reason = choice.get("finish_reason")
    return Completion(
        content=content,
        tool_calls=calls,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=Usage.parse(response.get("usage")),
    )


class EventDecoder:
    """Splits a server-sent-events byte stream into the ``data`` payloads of its events."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads of the events that ``data`` completed, in order."""
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        payloads = []
        for event in events:
            lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
            if lines:
                # "data:" then one optional space; several data lines form one payload.
                payloads.append(b"\n".join(line[5:].removeprefix(b" ") for line in lines))
        return payloads


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChunkAssembler:
    """Turns ``chat.completion.chunk`` payloads into stream events for ``where``."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.done = False
        self._text: list[str] = []
        self._saw_content = False
        self._calls: dict[int, _PartialCall] = {}
        self._finish_reason: str | None = None
        self._usage: Usage | None = None

    def add(self, payload: bytes) -> list[StreamEvent]:
        """The text deltas in one event's payload; fragments and usage are kept for later."""
        if payload == DONE:
            self.done = True
            return []
        chunk = _decode(payload, self.where)
        if not isinstance(chunk, dict):
            raise malformed(self.where, f"chunk {chunk!r}"[:200])
        if "error" in chunk:  # OpenAI reports a failure mid-stream as an event
            detail = chunk["error"]
            text = detail.get("message") if isinstance(detail, dict) else detail
            raise ProviderError("server", f"{self.where} failed mid-stream: {text}")
        if (usage := Usage.parse(chunk.get("usage"))) is not None:
            self._usage = usage
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if isinstance(reason := choice.get("finish_reason"), str):
                self._finish_reason = reason
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str):
                self._saw_content = True
                if content:
                    self._text.append(content)
                    events.append(TextDelta(content))
            for fragment in delta.get("tool_calls") or ():
                self._add_fragment(fragment)
        return events

    def _add_fragment(self, fragment: Any) -> None:
        if not isinstance(fragment, dict):
            return
        index = fragment.get("index", len(self._calls))
        call = self._calls.setdefault(index if isinstance(index, int) else 0, _PartialCall())
        call.id = call.id or str(fragment.get("id") or "")
        function = fragment.get("function")
        if isinstance(function, dict):
            call.name += str(function.get("name") or "")
            call.arguments.append(str(function.get("arguments") or ""))

    def finish(self) -> list[StreamEvent]:
        """The assembled tool calls and the :class:`StreamFinished` event, at end of stream."""
        if not self.done and self._finish_reason is None:
            raise ProviderError("connection", f"the stream from {self.where} ended early")
        calls = [
            ToolCall(id=part.id, name=part.name, arguments="".join(part.arguments))
            for _, part in sorted(self._calls.items())
        ]
        if not self._saw_content and not calls:
            raise malformed(self.where, "empty message")
        completion = Completion(
            content="".join(self._text) if self._saw_content else None,
            tool_calls=calls,
            finish_reason=self._finish_reason,
            usage=self._usage,
        )
        return [*(ToolCallReady(call) for call in calls), StreamFinished(completion)]
