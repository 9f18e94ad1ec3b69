"""A scripted fake of the OpenAI chat-completions HTTP API.

:class:`FakeOpenAI` is a real HTTP server (standard library only) that speaks enough of the
OpenAI protocol for the official ``openai`` client to talk to it. What it answers is scripted
by the requested model name, so a test chooses a behaviour just by picking a model:

==================  ========================================================================
model name          behaviour
==================  ========================================================================
``ok-*``            200, content ``[{model}] {last user text} (user messages: {n})``
``bad-*``           400 ``invalid_request_error`` / ``model_not_found``
``auth-*``          401 ``invalid_api_key`` (API keys are never checked otherwise)
``authecho-*``      like ``auth-*``, its message quoting the bearer key sent, as OpenAI's does
``forbidden-*``     403 ``permission_error``
``notfound-*``      404 ``model_not_found``
``ratelimit-S-*``   429 ``rate_limit_exceeded`` with ``Retry-After: S`` (default 1)
``quota-*``         429 ``insufficient_quota``, no ``Retry-After``
``error500-*``      500 ``server_error``
``flaky-N-*``       first N requests for that exact model name get 503, then like ``ok-*``
``slow-S-*``        waits S seconds (default 2), then like ``ok-*``
``hang-*``          never answers; the connection is closed when the server stops
``garbage-*``       200 ``application/json`` whose body is not JSON
``nochoices-*``     200 completion object with ``"choices": []``
``empty-*``         200 completion whose message has neither content nor tool calls
``html-*``          200 ``text/html`` page (a proxy's error page), not a completion
``truncated-*``     200 completion cut off mid-body: the connection closes early
``tool-*``          scripted tool calls (see :meth:`FakeOpenAI._tool_answer`)
``badtool-*``       like ``tool-*`` but the call's ``arguments`` are invalid JSON
anything else       404 ``model_not_found``
==================  ========================================================================

A prefix matches the bare name or the name followed by ``-``: ``ok`` and ``ok-primary`` are
both ``ok-*``, ``okay`` is unknown. ``stream: true`` turns answers into server-sent events;
error outcomes stay plain JSON errors.

It runs in a daemon thread, independent of any asyncio loop::

    with FakeOpenAI() as server:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0)
        ...
        assert server.requests_for("ok-")[0].messages[-1]["content"] == "hi"

or as a process (``PORT`` 0 picks a free port; the first stdout line gives the URL)::

    python -m hermes_core.testing.fake_openai PORT

Out of process, ``GET /_requests`` returns the recorded requests and ``DELETE /_requests``
clears them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FakeOpenAI", "RecordedRequest", "main"]

#: Example ids served by ``GET /v1/models``; any name matching the table above works.
EXAMPLE_MODELS = ("ok-model", "tool-model", "badtool-model", "slow-1-model", "flaky-1-model")

_DEFAULT_RATELIMIT_SECONDS = "1"
_DEFAULT_SLOW_SECONDS = 2.0
_DEFAULT_FLAKY_FAILURES = 1
_INVALID_TOOL_ARGUMENTS = "{not json"

_CALL_RE = re.compile(r"call\s+(\S+)(?:\s+(.*))?", re.DOTALL)
_CALL_MANY_RE = re.compile(r"call-many((?:\s+\S+)+)\s*", re.DOTALL)


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
    """

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    stream: bool
    headers: dict[str, str]
    body: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Return the JSON-friendly subset served by ``GET /_requests``."""
        return {
            "model": self.model,
            "messages": self.messages,
            "tools": self.tools,
            "stream": self.stream,
        }


@dataclass(frozen=True)
class _Error:
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
class _Answer:
    """A scripted successful completion (possibly with tool calls or no choices at all)."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    no_choices: bool = False

    @property
    def finish_reason(self) -> str:
        """OpenAI's finish reason for this answer."""
        return "tool_calls" if self.tool_calls else "stop"


@dataclass(frozen=True)
class _Delay:
    """Wait ``seconds`` (or until the server stops), then produce ``then``."""

    seconds: float
    then: _Answer


class _Hang:
    """Never answer; drop the connection once the server stops."""


class _Garbage:
    """Answer 200 ``application/json`` with a body that is not JSON."""


class _Html:
    """Answer 200 with an HTML page, as a misconfigured proxy or captive portal does."""


@dataclass(frozen=True)
class _Truncated:
    """Promise the whole completion for ``then`` in ``Content-Length``, send half, close."""

    then: _Answer


_Outcome = _Error | _Answer | _Delay | _Hang | _Garbage | _Html | _Truncated
_HTML_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"


def _matches(model: str, prefix: str) -> bool:
    """Tell whether ``model`` is ``prefix`` or starts with ``prefix-``."""
    return model == prefix or model.startswith(prefix + "-")


def _segment(model: str) -> str | None:
    """Return the second ``-``-separated part of ``model`` (``"2"`` in ``flaky-2-x``)."""
    parts = model.split("-", 2)
    return parts[1] if len(parts) > 1 else None


def _non_negative_float(text: str | None) -> float | None:
    """Parse ``text`` as a finite float >= 0, or return ``None``."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _text_of(content: Any) -> str:
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


def _echo(model: str, messages: list[dict[str, Any]]) -> str:
    """Build the ``ok-*`` answer: model, last user text and number of user messages."""
    user_texts = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    last = user_texts[-1] if user_texts else ""
    return f"[{model}] {last} (user messages: {len(user_texts)})"


def _tool_name(tool: Any) -> str | None:
    """Return the function name of one entry of a request's ``tools``, if it has one."""
    if isinstance(tool, dict):
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return name
    return None


def _resolve_tool(requested: str, offered: list[str]) -> str:
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


def _usage(messages: list[dict[str, Any]], answer: _Answer) -> dict[str, int]:
    """Rough word-count token usage; only needs to be plausible small integers."""
    prompt = sum(len(_text_of(m.get("content")).split()) + 1 for m in messages)
    completion = len((answer.content or "").split()) + sum(
        len(call["function"]["arguments"]) // 4 + 1 for call in answer.tool_calls
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _chunks(text: str) -> list[str]:
    """Split ``text`` into word-sized pieces whose concatenation is exactly ``text``."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


class _Server(ThreadingHTTPServer):
    """The HTTP server, carrying a back-reference to its :class:`FakeOpenAI`."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when many runs start at once.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], fake: FakeOpenAI) -> None:
        """Bind to ``address``; ``fake`` holds the scripted state shared by handlers."""
        self.fake = fake
        # Per-server so a restarted FakeOpenAI does not wake, or get woken by, old handlers.
        self.stop_event = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Shut down every open client socket.

        Handlers blocked on an idle keep-alive connection would otherwise keep serving
        pooled clients after :meth:`FakeOpenAI.stop`, which should look like a dead server.
        """
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            # Already closed by the client or by a finishing handler: nothing to drop.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests and plays the scripted outcome for chat completions."""

    # HTTP/1.1 keep-alive, because the openai client pools connections.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each response would stall
    # ~40 ms on the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server
    _responded = False

    # -- plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        """Register the connection so the server can drop it on stop."""
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; test output should stay clean."""

    def do_GET(self) -> None:
        """Dispatch a GET request."""
        self._dispatch()

    def do_POST(self) -> None:
        """Dispatch a POST request."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Dispatch a DELETE request."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Dispatch a PUT request (always 404/405, but in OpenAI's error format)."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Dispatch a PATCH request (always 404/405, but in OpenAI's error format)."""
        self._dispatch()

    def _dispatch(self) -> None:
        """Route by path and method; turn handler bugs into 500s instead of dead sockets."""
        self._responded = False
        try:
            self._route()
        except (ConnectionError, TimeoutError):
            # The client is gone; nothing left to tell it.
            self.close_connection = True
        except Exception as exc:
            if self._responded:
                self.close_connection = True
                return
            self._send_error(
                _Error(500, f"fake_openai internal error: {exc!r}", "server_error", None)
            )

    def _route(self) -> None:
        """Serve one request according to its path and method."""
        # Always consume the body so a keep-alive connection stays in sync.
        raw = self._read_body()
        path = urlsplit(self.path).path.rstrip("/") or "/"
        routes: dict[str, dict[str, Callable[[], None]]] = {
            "/v1/chat/completions": {"POST": lambda: self._chat_completions(raw)},
            "/v1/models": {"GET": self._models},
            "/health": {"GET": lambda: self._send_json(200, {"status": "ok"})},
            "/_requests": {"GET": self._list_requests, "DELETE": self._clear_requests},
        }
        methods = routes.get(path)
        if methods is None:
            self._send_error(
                _Error(
                    404,
                    f"Unknown request URL: {self.command} {path}",
                    "invalid_request_error",
                    "unknown_url",
                )
            )
            return
        handler = methods.get(self.command)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            self._send_error(
                _Error(
                    405,
                    f"Method {self.command} not allowed on {path}; use {allowed}",
                    "invalid_request_error",
                    "method_not_allowed",
                    {"Allow": allowed},
                )
            )
            return
        handler()

    def _read_body(self) -> bytes:
        """Read the request body (``Content-Length`` or chunked); empty if there is none."""
        length = self.headers.get("Content-Length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                self.close_connection = True
                return b""
            return self.rfile.read(size) if size > 0 else b""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Skip trailers up to the blank line that ends the message.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return b""

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send ``payload`` as JSON with an exact Content-Length (keep-alive friendly)."""
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a complete, length-delimited response."""
        self._responded = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_error(self, error: _Error) -> None:
        """Send an OpenAI-format error."""
        self._send_json(error.status, error.body(), error.headers)

    # -- endpoints ------------------------------------------------------------------------

    def _models(self) -> None:
        """``GET /v1/models`` in OpenAI's list format."""
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "fake-openai"}
            for name in EXAMPLE_MODELS
        ]
        self._send_json(200, {"object": "list", "data": data})

    def _list_requests(self) -> None:
        """``GET /_requests``: recorded requests, for out-of-process tests."""
        self._send_json(200, [r.summary() for r in self.server.fake.snapshot()])

    def _clear_requests(self) -> None:
        """``DELETE /_requests``: forget recorded requests (see :meth:`FakeOpenAI.clear`)."""
        cleared = len(self.server.fake.snapshot())
        self.server.fake.clear()
        self._send_json(200, {"cleared": cleared})

    def _chat_completions(self, raw: bytes) -> None:
        """``POST /v1/chat/completions``: validate, record, then play the scripted outcome."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_error(
                _Error(
                    400,
                    "We could not parse the JSON body of your request.",
                    "invalid_request_error",
                    "invalid_json",
                )
            )
            return
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            self._send_error(
                _Error(
                    400,
                    "Missing required parameter: 'model'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                )
            )
            return
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            self._send_error(
                _Error(
                    400,
                    "Missing required parameter: 'messages' (a list of objects).",
                    "invalid_request_error",
                    "missing_required_parameter",
                )
            )
            return
        tools = body.get("tools")
        request = RecordedRequest(
            model=model,
            messages=messages,
            tools=tools if isinstance(tools, list) and tools else None,
            stream=body.get("stream") is True,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        fake = self.server.fake
        fake._record(request)
        self._play(request, fake._plan(request))

    def _play(self, request: RecordedRequest, outcome: _Outcome) -> None:
        """Turn a scripted outcome into an HTTP response."""
        if isinstance(outcome, _Delay):
            # Event.wait rather than time.sleep so stop() interrupts it.
            if self.server.stop_event.wait(outcome.seconds):
                self.close_connection = True
                return
            outcome = outcome.then
        if isinstance(outcome, _Error):
            self._send_error(outcome)
        elif isinstance(outcome, _Hang):
            self.server.stop_event.wait()
            self.close_connection = True
        elif isinstance(outcome, _Garbage):
            self._send_bytes(200, b"this is not json", "application/json")
        elif isinstance(outcome, _Html):
            self._send_bytes(200, _HTML_PAGE, "text/html; charset=utf-8")
        elif isinstance(outcome, _Truncated):
            body = json.dumps(self.server.fake._completion(request, outcome.then)).encode()
            self._responded = True
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif request.stream:
            self._stream(request, outcome)
        else:
            self._send_json(200, self.server.fake._completion(request, outcome))

    def _stream(self, request: RecordedRequest, answer: _Answer) -> None:
        """Send ``answer`` as ``chat.completion.chunk`` server-sent events, then ``[DONE]``."""
        fake = self.server.fake
        completion_id = f"chatcmpl-{fake._next_number()}"
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
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

        def delta(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

        self._responded = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No Content-Length for a stream, so the end of the body is the end of the connection.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        if not answer.no_choices:
            # Like OpenAI: content "" to open a text answer, null to open a tool-call answer.
            opening = "" if answer.content is not None else None
            delta({"role": "assistant", "content": opening})
            for piece in _chunks(answer.content or ""):
                delta({"content": piece})
            for index, call in enumerate(answer.tool_calls):
                delta({"tool_calls": [{"index": index, **call}]})
            delta({}, answer.finish_reason)
        if include_usage or answer.no_choices:
            chunk([], _usage(request.messages, answer) if include_usage else None)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class FakeOpenAI:
    """A scripted OpenAI chat-completions server running in a background thread.

    Behaviour is chosen by the requested model name (see the module docstring). Every
    valid chat-completions request is recorded in :attr:`requests`, in arrival order.

    Attributes:
        requests: Recorded chat-completions requests. Appended to from server threads
            under a lock; read it freely, but prefer :meth:`requests_for` or
            :meth:`snapshot` while requests may still be arriving.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Configure the address; nothing is bound until :meth:`start`.

        Args:
            host: Interface to bind.
            port: Port to bind; 0 picks a free one (see :attr:`port` after start).
        """
        self.host = host
        self.requested_port = port
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        # Separate from _lock: stop() blocks in shutdown() while handlers may need _lock.
        self._lifecycle_lock = threading.Lock()
        self._flaky_counts: dict[str, int] = {}
        self._counter = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind and serve in a daemon thread.

        Returns:
            ``self``, so ``server = FakeOpenAI().start()`` works.

        Raises:
            RuntimeError: If the server is already running.
        """
        with self._lifecycle_lock:
            if self._server is not None:
                raise RuntimeError("FakeOpenAI is already running")
            server = _Server((self.host, self.requested_port), self)
            self._port = int(server.server_address[1])
            # A short poll interval keeps stop() prompt: shutdown() waits for the next poll.
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fake-openai:{self._port}",
                daemon=True,
            )
            self._server, self._thread = server, thread
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call repeatedly.

        In-flight ``hang-*`` and ``slow-*`` requests are woken and their connections
        closed, and idle keep-alive connections are dropped, so this returns promptly.
        """
        with self._lifecycle_lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        # Set the event first: shutdown() itself does not interrupt handler threads.
        server.stop_event.set()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Show the address and whether the server is running."""
        state = "running" if self._server is not None else "stopped"
        return f"<FakeOpenAI {self.host}:{self._port or self.requested_port} {state}>"

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: If the server has never been started.
        """
        if self._port is None:
            raise RuntimeError("FakeOpenAI has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for an OpenAI client, e.g. ``http://127.0.0.1:8123/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    # -- recorded requests ----------------------------------------------------------------

    def snapshot(self) -> list[RecordedRequest]:
        """Return a copy of :attr:`requests`, taken under the lock."""
        with self._lock:
            return list(self.requests)

    def requests_for(self, model_prefix: str) -> list[RecordedRequest]:
        """Return the recorded requests whose model name starts with ``model_prefix``."""
        return [r for r in self.snapshot() if r.model.startswith(model_prefix)]

    def clear(self) -> None:
        """Forget recorded requests and reset ``flaky-*`` counters.

        Resetting the counters too makes a shared (e.g. module-scoped) server behave like a
        fresh one after ``clear()``.
        """
        with self._lock:
            self.requests.clear()
            self._flaky_counts.clear()

    def _record(self, request: RecordedRequest) -> None:
        """Append ``request`` to :attr:`requests` (called from handler threads)."""
        with self._lock:
            self.requests.append(request)

    # -- scripting ------------------------------------------------------------------------

    def _next_number(self) -> int:
        """Return the next value of the per-instance counter behind all generated ids."""
        with self._lock:
            self._counter += 1
            return self._counter

    def _plan(self, request: RecordedRequest) -> _Outcome:
        """Decide the outcome of a chat-completions request from its model name."""
        model = request.model
        if _matches(model, "ok"):
            return _Answer(_echo(model, request.messages))
        if _matches(model, "bad"):
            return _Error(
                400,
                f"The model `{model}` does not exist or is invalid",
                "invalid_request_error",
                "model_not_found",
            )
        if _matches(model, "auth"):
            return _Error(
                401,
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if _matches(model, "authecho"):
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            return _Error(
                401,
                f"Incorrect API key provided: {key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if _matches(model, "forbidden"):
            return _Error(
                403,
                f"You are not allowed to use the model `{model}`.",
                "permission_error",
                "permission_denied",
            )
        if _matches(model, "ratelimit"):
            segment = _segment(model)
            retry_after = _DEFAULT_RATELIMIT_SECONDS
            if segment is not None and _non_negative_float(segment) is not None:
                # Echo the text as given so tests can compare the header verbatim.
                retry_after = segment
            return _Error(
                429,
                f"Rate limit reached for {model}. Please try again in {retry_after}s.",
                "rate_limit_error",
                "rate_limit_exceeded",
                {"Retry-After": retry_after},
            )
        if _matches(model, "quota"):
            return _Error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            )
        if _matches(model, "error500"):
            return _Error(
                500,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            )
        if _matches(model, "flaky"):
            return self._flaky(request)
        if _matches(model, "slow"):
            seconds = _non_negative_float(_segment(model))
            return _Delay(
                _DEFAULT_SLOW_SECONDS if seconds is None else seconds,
                _Answer(_echo(model, request.messages)),
            )
        if _matches(model, "hang"):
            return _Hang()
        if _matches(model, "garbage"):
            return _Garbage()
        if _matches(model, "nochoices"):
            return _Answer(None, no_choices=True)
        if _matches(model, "empty"):
            return _Answer(None)
        if _matches(model, "html"):
            return _Html()
        if _matches(model, "truncated"):
            return _Truncated(_Answer(_echo(model, request.messages)))
        if _matches(model, "tool"):
            return self._tool_answer(request, valid_arguments=True)
        if _matches(model, "badtool"):
            return self._tool_answer(request, valid_arguments=False)
        # notfound-* lands here on purpose: it is the same error as an unknown model.
        return _Error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    def _flaky(self, request: RecordedRequest) -> _Outcome:
        """Fail the first N requests for this exact model name with 503, then answer."""
        segment = _segment(request.model)
        failures = (
            int(segment) if segment is not None and segment.isdigit() else _DEFAULT_FLAKY_FAILURES
        )
        with self._lock:
            attempt = self._flaky_counts.get(request.model, 0) + 1
            self._flaky_counts[request.model] = attempt
        if attempt <= failures:
            return _Error(
                503,
                f"The server is overloaded (flaky attempt {attempt} of {failures} fails).",
                "server_error",
                "service_unavailable",
            )
        return _Answer(_echo(request.model, request.messages))

    def _tool_answer(self, request: RecordedRequest, *, valid_arguments: bool) -> _Answer:
        """Script a ``tool-*`` / ``badtool-*`` answer.

        * Trailing ``tool`` messages (results fed back) are answered with
          ``tool results: <r1> | <r2> ...``.
        * Otherwise, if tools are offered, the last user text picks the call:
          ``call <name> [<json>]`` calls one tool (arguments verbatim, ``{}`` if absent),
          ``call-many <n1> <n2> ...`` calls several with ``{}``, and anything else calls
          the first offered tool with ``{}``. Names resolve via :func:`_resolve_tool`.
        * With no tools offered it answers like ``ok-*``.

        ``valid_arguments=False`` replaces every ``arguments`` string with invalid JSON.
        """
        messages = request.messages
        results: list[str] = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.append(_text_of(message.get("content")))
        if results:
            return _Answer("tool results: " + " | ".join(reversed(results)))

        offered = [name for name in map(_tool_name, request.tools or []) if name is not None]
        if not offered:
            return _Answer(_echo(request.model, messages))

        user_texts = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        directive = user_texts[-1].strip() if user_texts else ""
        calls: list[tuple[str, str]]
        if many := _CALL_MANY_RE.fullmatch(directive):
            calls = [(_resolve_tool(name, offered), "{}") for name in many.group(1).split()]
        elif one := _CALL_RE.fullmatch(directive):
            arguments = (one.group(2) or "").strip() or "{}"
            calls = [(_resolve_tool(one.group(1), offered), arguments)]
        else:
            calls = [(offered[0], "{}")]

        tool_calls = [
            {
                "id": f"call_{self._next_number()}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if valid_arguments else _INVALID_TOOL_ARGUMENTS,
                },
            }
            for name, arguments in calls
        ]
        return _Answer(None, tool_calls)

    def _completion(self, request: RecordedRequest, answer: _Answer) -> dict[str, Any]:
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
            "id": f"chatcmpl-{self._next_number()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": choices,
            "usage": _usage(request.messages, answer),
        }


def main(argv: list[str] | None = None) -> int:
    """Run a :class:`FakeOpenAI` in the foreground until SIGTERM or SIGINT.

    Prints exactly one line, ``listening on <url>``, once the port is bound.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code (0 after a clean shutdown).
    """
    parser = argparse.ArgumentParser(
        prog="python -m hermes_core.testing.fake_openai",
        description="Scripted fake OpenAI chat-completions server.",
    )
    parser.add_argument("port", type=int, nargs="?", default=0, help="port (0 = pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    args = parser.parse_args(argv)

    done = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    # Install handlers before announcing the port, so an immediate SIGTERM is still clean.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = FakeOpenAI(args.host, args.port).start()
    try:
        print(f"listening on {server.url}", flush=True)
        # Timed waits so signal handlers get to run promptly on every platform.
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
