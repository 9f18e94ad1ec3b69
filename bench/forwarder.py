"""A bare OpenAI-protocol forwarder: the floor for a Python gateway on hermes-core's stack.

uvicorn + Starlette in front, the same aiohttp client hermes-core's provider uses behind, and
nothing in between: each ``POST /v1/chat/completions`` body goes to the upstream as it is and
the upstream's answer comes back as it is. No sessions, history, hooks or store. uvloop (and
httptools, which uvicorn picks itself) are used when installed, as ``hermes-core run`` does.
With ``--client httpx2`` the client behind is httpx2 instead (its pool as large): the
forwarder issue 13 measured its target against, before hermes-core's provider left httpx2.

    .venv/bin/python bench/forwarder.py UPSTREAM_BASE_URL   # prints "listening on <url>"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hermes_core.asgi import EmbeddedServer
from hermes_core.runner import run

CONNECTIONS = 512


Forward = Callable[[bytes], Awaitable[Response]]
HEADERS = {"Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def aiohttp_client(target: str) -> AsyncIterator[Forward]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONNECTIONS, limit_per_host=0),
        cookie_jar=aiohttp.DummyCookieJar(),
    )

    async def forward(body: bytes) -> Response:
        async with session.post(target, data=body, headers=HEADERS) as reply:
            answer = await reply.read()
            return Response(answer, reply.status, media_type=reply.content_type)

    async with session:
        yield forward


@contextlib.asynccontextmanager
async def httpx2_client(target: str) -> AsyncIterator[Forward]:
    limits = httpx2.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

    async def forward(body: bytes) -> Response:
        reply = await client.post(target, content=body, headers=HEADERS)
        media_type = reply.headers.get("content-type")
        return Response(reply.content, reply.status_code, media_type=media_type)

    async with httpx2.AsyncClient(limits=limits, timeout=30) as client:
        yield forward


CLIENTS = {"aiohttp": aiohttp_client, "httpx2": httpx2_client}


async def serve(upstream: str, client: str) -> int:
    target = upstream.rstrip("/") + "/chat/completions"
    async with CLIENTS[client](target) as forward:
        return await serve_forwarding(forward)


async def serve_forwarding(forward: Forward) -> int:
    async def endpoint(request: Request) -> Response:
        return await forward(await request.body())

    app = Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])
    server = EmbeddedServer(app, name="bare forwarder", stop_grace_s=1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await server.start("127.0.0.1", 0, backlog=2048)
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    await server.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", help="the upstream's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="aiohttp")
    args = parser.parse_args()
    return run(serve(args.upstream, args.client))


if __name__ == "__main__":
    raise SystemExit(main())
