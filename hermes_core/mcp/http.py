"""The streamable-HTTP transport: headers, OAuth, and a client that remembers why it failed.

The SDK turns a refused connection into a bare "Connection closed" and a 401 into "Server
returned an error response"; the errors recorded here let the user read *why* (refused, DNS,
TLS, or an authentication refusal).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.auth import AuthRejected, gateway_auth

if TYPE_CHECKING:
    import httpx2
    from mcp.shared._stream_protocols import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage

# The mcp SDK and httpx2 (about a second to import) are imported when a server starts.

AUTH_STATUSES = (401, 403)


def recording_http_client(
    spec: MCPServerSpec, errors: list[BaseException], auth: httpx2.Auth | None = None
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` for ``streamable_http_client`` with ``spec``'s headers and
    ``auth`` (default: what the gateway uses, see :func:`~hermes_core.mcp.auth.gateway_auth`)
    that appends transport errors and authentication refusals to ``errors``."""
    import httpx2
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    endpoint = httpx2.URL(spec.url or "")

    class RecordingTransport(httpx2.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            try:
                response = await super().handle_async_request(request)
            except httpx2.TransportError as error:
                errors.append(error)
                raise
            if request.url.copy_with(query=None) == endpoint:
                # An OAuth flow answers a first 401 itself: only the latest answer counts.
                errors[:] = [e for e in errors if not isinstance(e, AuthRejected)]
                if response.status_code in AUTH_STATUSES:
                    errors.append(AuthRejected(response.status_code))
            return response

    return httpx2.AsyncClient(
        transport=RecordingTransport(),
        headers=dict(spec.headers),
        auth=auth if auth is not None else gateway_auth(spec),
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
    )


@contextlib.asynccontextmanager
async def http_streams(
    spec: MCPServerSpec, errors: list[BaseException], auth: httpx2.Auth | None = None
) -> AsyncIterator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
    """The session's streams to ``spec``'s server; failures go to ``errors``."""
    from mcp.client.streamable_http import streamable_http_client

    assert spec.url is not None
    client = recording_http_client(spec, errors, auth)
    async with client, streamable_http_client(spec.url, http_client=client) as streams:
        yield streams
