"""``hermes_core.http_protocol``: uvicorn's h11 and httptools protocols behave alike here.

Each test runs once per protocol (httptools' when it is installed) on a real
:class:`~hermes_core.asgi.EmbeddedServer` with a small Starlette app, over a raw socket.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hermes_core import http_protocol
from hermes_core.asgi import EmbeddedServer

PROTOCOLS = [pytest.param(http_protocol.H11DeadlineProtocol, id="h11")]
if http_protocol.PROTOCOL is not http_protocol.H11DeadlineProtocol:
    PROTOCOLS.append(pytest.param(http_protocol.PROTOCOL, id="httptools"))


async def echo_size(request: Request) -> Response:
    return JSONResponse({"received": len(await request.body())})


def render(message: str) -> tuple[str, bytes]:
    return "application/json", json.dumps({"error": {"message": message}}).encode()


@pytest_asyncio.fixture(params=PROTOCOLS)
async def port(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[int]:
    """A server on a free port, with the protocol of the test's parameter."""
    monkeypatch.setattr(http_protocol, "PROTOCOL", request.param)
    app = Starlette(routes=[Route("/", echo_size, methods=["POST"])])
    server = EmbeddedServer(
        app, name="test server", stop_grace_s=1, header_timeout_s=0.5, bad_request_body=render
    )
    yield await server.start("127.0.0.1", 0, backlog=16)
    await server.stop()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


def post(body: bytes, *, close: bool = True, extra: bytes = b"") -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + connection
        + extra
        + b"\r\n"
        + body
    )


def error_of(answer: bytes) -> str:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"content-type: application/json" in head.lower()
    message: str = json.loads(body)["error"]["message"]
    return message


async def test_unparsable_requests_get_the_owners_400_body(port: int) -> None:
    for bad in (b"X-Session: a\x00b\r\n", b"Header line without a colon\r\n"):
        answer = await exchange(port, post(b"{}", extra=bad))
        assert error_of(answer).startswith("Invalid HTTP request received")


async def test_headers_over_the_limit_are_refused_before_they_end(port: int) -> None:
    # Sent unfinished, so the server has read all of it when it refuses (no reset).
    big = b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (http_protocol.MAX_HEAD_BYTES + 1000)
    assert error_of(await exchange(port, big)).startswith("Invalid HTTP request received")


async def test_a_body_beyond_the_head_limit_is_not_counted_as_head(port: int) -> None:
    body = b"x" * (4 * http_protocol.MAX_HEAD_BYTES)
    answer = await exchange(port, post(body))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b'{"received":%d}' % len(body))


async def test_pipelined_requests_are_all_answered(port: int) -> None:
    answer = await exchange(port, post(b"1", close=False) + post(b"22", close=False) + post(b""))
    assert answer.count(b"HTTP/1.1 200 ") == 3
    assert re.findall(rb'\{"received":\d+\}', answer) == [
        b'{"received":1}',
        b'{"received":2}',
        b'{"received":0}',
    ]


async def test_a_connection_without_complete_headers_is_closed_at_the_deadline(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no answer
    finally:
        writer.close()
        await writer.wait_closed()


async def test_heads_of_successive_requests_do_not_add_up_to_the_limit(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    header = b"X-Pad: " + b"p" * 1024 + b"\r\n"
    try:
        for _ in range(2 * http_protocol.MAX_HEAD_BYTES // len(header)):
            writer.write(post(b"{}", close=False, extra=header))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = re.search(rb"content-length: (\d+)", head.lower())
            assert length is not None, head
            assert await reader.readexactly(int(length.group(1))) == b'{"received":2}'
    finally:
        writer.close()
        await writer.wait_closed()
