"""The streamable-HTTP transport, with a client that remembers why a connection failed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx2
    from mcp.shared._stream_protocols import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage

# The mcp SDK and httpx2 (about a second to import) are imported when a server starts.


def _recording_http_client(errors: list[BaseException]) -> httpx2.AsyncClient:
    """An HTTP client for ``streamable_http_client`` that appends transport errors to ``errors``.

    The SDK turns a refused connection into a bare "Connection closed"; the recorded error
    lets the user read *why* (refused, DNS, TLS).
    """
    import httpx2
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    class RecordingTransport(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            try:
                return await super().handle_async_request(request)
            except httpx2.TransportError as error:
                errors.append(error)
                raise

    return httpx2.AsyncClient(
        transport=RecordingTransport(),
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
    )


@contextlib.asynccontextmanager
async def http_streams(
    url: str, errors: list[BaseException]
) -> AsyncIterator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
    """The session's streams to the server at ``url``; transport errors go to ``errors``."""
    from mcp.client.streamable_http import streamable_http_client

    client = _recording_http_client(errors)
    async with client, streamable_http_client(url, http_client=client) as streams:
        yield streams
