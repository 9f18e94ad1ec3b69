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
``ratelimit-S-*``   429 ``rate_limit_exceeded`` with ``Retry-After: S`` (default 1); S may
                    also be ``date`` (an HTTP date 1 s ahead) or ``soon`` (unparsable)
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
``tool-*``          scripted tool calls (see :meth:`Script.tool_answer`)
``badtool-*``       like ``tool-*`` but the call's ``arguments`` are invalid JSON
``stream-N-MS-*``   like ``ok-*``, streamed in N chunks (default 10) MS ms apart (default
                    100); not streamed, the whole answer after N x MS ms
``stall-N-*``       streams N chunks (default 2), then stalls: no more data, no end; not
                    streamed, like ``hang-*``
``nostream-*``      400 ``unsupported_parameter`` (mentioning ``stream``) to ``"stream": true``;
                    like ``ok-*`` otherwise
``say-*``           200, content the last user text verbatim (script a JSON answer)
anything else       404 ``model_not_found``
==================  ========================================================================

A prefix matches the bare name or the name followed by ``-``: ``ok`` and ``ok-primary`` are
both ``ok-*``, ``okay`` is unknown. ``stream: true`` turns answers into server-sent events,
written chunk by chunk, tool calls in fragments as OpenAI sends them, and a usage chunk when
``stream_options.include_usage`` is true; error outcomes stay plain JSON errors. A text
answer longer than the request's ``max_tokens`` (or ``max_completion_tokens``) words is cut
to that many, with ``finish_reason: "length"``. Each request's parameters (``max_tokens``,
``temperature``, ``response_format``…) are in :attr:`RecordedRequest.params`.

The parts: :mod:`~hermes_core.testing.outcomes` (what can be answered),
:mod:`~hermes_core.testing.script` (which answer a model name gets),
:mod:`~hermes_core.testing.handler` and :mod:`~hermes_core.testing.sse` (HTTP), and this
module (the server's lifecycle and recorded requests).

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
import signal
import threading
from types import FrameType, TracebackType

from hermes_core.testing.handler import ScriptedHTTPServer
from hermes_core.testing.outcomes import RecordedRequest
from hermes_core.testing.script import Script

__all__ = ["FakeOpenAI", "RecordedRequest", "main"]


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
        self.script = Script()
        self._lock = threading.Lock()
        # Separate from _lock: stop() blocks in shutdown() while handlers may need _lock.
        self._lifecycle_lock = threading.Lock()
        self._server: ScriptedHTTPServer | None = None
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
            server = ScriptedHTTPServer((self.host, self.requested_port), self)
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
    def connections_accepted(self) -> int:
        """TCP connections accepted since :meth:`start` (0 when stopped)."""
        server = self._server
        return server.accepted if server is not None else 0

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
        self.script.reset()

    def record(self, request: RecordedRequest) -> None:
        """Append ``request`` to :attr:`requests` (called from handler threads)."""
        with self._lock:
            self.requests.append(request)


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
