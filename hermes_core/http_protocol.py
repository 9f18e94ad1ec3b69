"""uvicorn's HTTP protocols with what uvicorn 0.54 has no setting for: a header deadline, and
the body of the 400 it answers a request it cannot parse with.

:data:`PROTOCOL` is httptools' protocol when httptools is installed (the ``fast`` extra: its
parser is C, h11's is Python) and h11's otherwise; both behave the same here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds a connection may take to send a request's headers (``platforms.http.header_timeout_s``).
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: Bytes a request line and headers may take. httptools' parser has no limit at all (a client
#: could make it buffer gigabytes), and h11 applies its 16 KiB only to what arrives in pieces.
MAX_HEAD_BYTES = 64 * 1024
#: The body of the 400 for a request that is not valid HTTP, from uvicorn's message:
#: ``(content type, body)``. ``None`` keeps uvicorn's plain text.
BadRequestBody = Callable[[str], tuple[str, bytes]]


class Config(uvicorn.Config):
    """uvicorn's settings plus the header deadline and the 400 body."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout_s: float,
        bad_request_body: BadRequestBody | None,
        **options: Any,
    ) -> None:
        super().__init__(app, http=PROTOCOL, **options)
        self.header_timeout_s = header_timeout_s
        self.bad_request_body = bad_request_body


class _Deadline(asyncio.Protocol):
    """What both protocols get: a header deadline, the head limit, and the 400's body.

    - **Deadline**: a connection whose request headers are not complete ``header_timeout_s``
      after it opened, or after its previous response, is closed. uvicorn 0.54 has no header
      timeout: its keep-alive timer stops at the first byte received, so a client that sends
      half a request line holds a connection and a file descriptor for as long as it likes.
      The deadline is off while a request is being answered. One timer per connection checks
      it, re-armed only when it fires, so a request costs no timer of its own.
    - **Head limit**: a request line and headers over :data:`MAX_HEAD_BYTES` are refused
      before they are parsed further.

    Mixed in before uvicorn's protocol, whose methods it extends; the subclass says when a
    request's head is being received (:meth:`_in_head`) and calls :meth:`_head_done`.
    """

    config: uvicorn.Config
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _timer: asyncio.TimerHandle | None = None
    _waiting_since: float | None = None  # when we began to wait for a request's headers
    _head_bytes = 0  # of the current request's head, so far
    _head_tail = b""  # its last bytes: the head's end may straddle two reads

    def _in_head(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._wait_for_headers()

    def data_received(self, data: bytes) -> None:
        if self._in_head():
            budget = MAX_HEAD_BYTES - self._head_bytes
            # Over the limit, unless the head ends (CR LF CR LF) within it.
            if len(data) > budget and b"\r\n\r\n" not in self._head_tail + data[:budget]:
                limit = f"{MAX_HEAD_BYTES // 1024} KiB"
                self.send_400_response(f"Invalid HTTP request received: headers over {limit}.")
                return
            self._head_bytes += len(data)
            self._head_tail = (self._head_tail + data)[-3:]
        super().data_received(data)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._wait_for_headers()  # of the next request; a pipelined one ends it at once
        super().on_response_complete()  # type: ignore[misc]  # uvicorn's protocol has it

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        assert isinstance(self.config, Config)
        if self.config.bad_request_body is None:
            super().send_400_response(msg)  # type: ignore[misc]  # uvicorn's protocol has it
            return
        content_type, body = self.config.bad_request_body(msg)
        head = (
            f"HTTP/1.1 400 Bad Request\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()

    def _head_done(self) -> None:
        """A request's headers are complete: its body does not count, no deadline runs."""
        self._waiting_since = None
        self._head_bytes, self._head_tail = 0, b""

    def _wait_for_headers(self) -> None:
        self._waiting_since = self.loop.time()
        if self._timer is None:
            self._arm(self._timeout_s())

    def _timeout_s(self) -> float:
        assert isinstance(self.config, Config)
        return self.config.header_timeout_s

    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._waiting_since is None or self.transport.is_closing():
            return  # answering a request: the next wait arms the timer again
        late = self.loop.time() - self._waiting_since - self._timeout_s()
        if late >= 0:
            self.transport.close()
        else:
            self._arm(-late)


class H11DeadlineProtocol(_Deadline, H11Protocol):
    """h11's protocol: a head is being received while the client is idle (no request yet)."""

    def _in_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request's headers are complete
            self._head_done()


PROTOCOL: type[asyncio.Protocol] = H11DeadlineProtocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed (the fast extra): h11 it is
    pass
else:

    class HttpToolsDeadlineProtocol(_Deadline, HttpToolsProtocol):
        """httptools' protocol: a head is being received from the end of the previous
        request (or the connection's start) to its headers' end."""

        _receiving_head = True

        def _in_head(self) -> bool:
            return self._receiving_head

        def on_headers_complete(self) -> None:
            self._receiving_head = False
            self._head_done()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._receiving_head = True
            super().on_message_complete()

    PROTOCOL = HttpToolsDeadlineProtocol
