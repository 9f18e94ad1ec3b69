"""A scripted answer as OpenAI streams it: ``chat.completion.chunk`` server-sent events.

Each chunk is written and flushed on its own, so a client sees it when the script says:
``Answer.chunk_delay_s`` apart, or never again after ``Answer.stall_after`` content chunks.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from hermes_core.testing.outcomes import Answer, RecordedRequest, usage

#: Characters of a tool call's arguments per fragment, as OpenAI cuts them (roughly).
ARGUMENT_FRAGMENT = 8


def _tool_call_fragments(index: int, call: dict[str, Any]) -> list[dict[str, Any]]:
    """One call as OpenAI streams it: id and name first, then the arguments in pieces."""
    function = call["function"]
    arguments = function["arguments"]
    first = {
        "index": index,
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": ""},
    }
    rest = [
        {"index": index, "function": {"arguments": arguments[start : start + ARGUMENT_FRAGMENT]}}
        for start in range(0, len(arguments), ARGUMENT_FRAGMENT)
    ]
    return [first, *rest]


def write_stream(
    handler: BaseHTTPRequestHandler,
    stop: threading.Event,
    completion_id: str,
    request: RecordedRequest,
    answer: Answer,
) -> None:
    """Send ``answer`` as server-sent events on ``handler``, then ``[DONE]``; the connection
    closes after it (no Content-Length). ``stop`` cuts delays and stalls short."""
    created = int(time.time())
    options = request.body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = usage
        handler.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        handler.wfile.flush()

    def delta(delta: dict[str, Any], finish_reason: str | None = None) -> None:
        chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.flush()

    if not answer.no_choices:
        # Like OpenAI: content "" to open a text answer, null to open a tool-call answer.
        opening = "" if answer.content is not None else None
        delta({"role": "assistant", "content": opening})
        for number, piece in enumerate(answer.stream_pieces()):
            if number == answer.stall_after:
                stop.wait()
                return
            if answer.chunk_delay_s and stop.wait(answer.chunk_delay_s):
                return
            delta({"content": piece})
        for index, call in enumerate(answer.tool_calls):
            for fragment in _tool_call_fragments(index, call):
                delta({"tool_calls": [fragment]})
        delta({}, answer.finish_reason)
    if include_usage or answer.no_choices:
        chunk([], usage(request.messages, answer) if include_usage else None)
    handler.wfile.write(b"data: [DONE]\n\n")
    handler.wfile.flush()
