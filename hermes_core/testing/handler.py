"""The scripted server's HTTP side: the threaded server, routing, and playing an outcome."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import hermes_core.testing.outcomes as outcomes
from hermes_core.testing.outcomes import ErrorReply, Outcome, RecordedRequest
from hermes_core.testing.sse import write_stream

if TYPE_CHECKING:
    from hermes_core.testing.openai_server import FakeOpenAI

#: Example ids served by ``GET /v1/models``; any name the script knows works.
EXAMPLE_MODELS = ("ok-model", "tool-model", "badtool-model", "slow-1-model", "flaky-1-model")
#: What a ``nostream-*`` model answers to ``"stream": true``.
STREAM_REFUSED = ErrorReply(
    400,
    "Streaming is not supported for this model; set 'stream' to false.",
    "invalid_request_error",
    "unsupported_parameter",
)


class ScriptedHTTPServer(ThreadingHTTPServer):
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
        #: Connections accepted since start: shows whether a client's pool reuses them.
        self.accepted = 0
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
    server: ScriptedHTTPServer
    _responded = False

    # -- plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        """Register the connection so the server can drop it on stop."""
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
            self.server.accepted += 1

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
                ErrorReply(500, f"fake_openai internal error: {exc!r}", "server_error", None)
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
                ErrorReply(
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
                ErrorReply(
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

    def _send_error(self, error: ErrorReply) -> None:
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
                ErrorReply(
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
                ErrorReply(
                    400,
                    "Missing required parameter: 'model'.",
                    "invalid_request_error",
                    "missing_required_parameter",
                )
            )
            return
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            self._send_error(
                ErrorReply(
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
        fake.record(request)
        self._play(request, fake.script.plan(request))

    def _play(self, request: RecordedRequest, outcome: Outcome) -> None:
        """Turn a scripted outcome into an HTTP response."""
        if isinstance(outcome, outcomes.Delay):
            if self._wait(outcome.seconds):
                return
            outcome = outcome.then
        request.answered_at = time.time()  # before the first byte: the client cannot be ahead
        if isinstance(outcome, ErrorReply):
            self._send_error(outcome)
        elif isinstance(outcome, outcomes.Hang):
            self.server.stop_event.wait()
            self.close_connection = True
        elif isinstance(outcome, outcomes.Garbage):
            self._send_bytes(200, b"this is not json", "application/json")
        elif isinstance(outcome, outcomes.Html):
            self._send_bytes(200, outcomes.HTML_PAGE, "text/html; charset=utf-8")
        elif isinstance(outcome, outcomes.Truncated):
            body = json.dumps(self.server.fake.script.completion(request, outcome.then)).encode()
            self._responded = True
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif request.stream and not outcome.streams:
            self._send_error(STREAM_REFUSED)
        elif request.stream:
            self._responded = True
            self.close_connection = True
            completion_id = f"chatcmpl-{self.server.fake.script.next_number()}"
            write_stream(self, self.server.stop_event, completion_id, request, outcome)
        elif not self._wait(outcome.chunk_delay_s * len(outcome.stream_pieces())):
            self._send_json(200, self.server.fake.script.completion(request, outcome))

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``; True (and the connection marked to close) when the server stops.

        Event.wait rather than time.sleep so stop() interrupts it.
        """
        if seconds > 0 and self.server.stop_event.wait(seconds):
            self.close_connection = True
            return True
        return False
