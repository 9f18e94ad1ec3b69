"""A bare OpenAI-protocol forwarder: the floor for a Python gateway on hermes-core's stack.

uvicorn + Starlette in front, the same aiohttp client hermes-core's provider uses behind, and
nothing in between: each ``POST /v1/chat/completions`` body goes to the upstream as it is and
the upstream's answer comes back as it is. No sessions, history, hooks or store. uvloop (and
httptools, which uvicorn picks itself) are used when installed, as ``hermes-core run`` does.

    .venv/bin/python bench/forwarder.py UPSTREAM_BASE_URL   # prints "listening on <url>"
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hermes_core.asgi import EmbeddedServer
from hermes_core.runner import run

CONNECTIONS = 512


async def serve(upstream: str) -> int:
    target = upstream.rstrip("/") + "/chat/completions"
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONNECTIONS, limit_per_host=0),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    headers = {"Content-Type": "application/json"}

    async def forward(request: Request) -> Response:
        body = await request.body()
        async with session.post(target, data=body, headers=headers) as reply:
            answer = await reply.read()
            return Response(answer, reply.status, media_type=reply.content_type)

    app = Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"])])
    server = EmbeddedServer(app, name="bare forwarder", stop_grace_s=1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        port = await server.start("127.0.0.1", 0, backlog=2048)
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await stop.wait()
        await server.stop()
    finally:
        await session.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", help="the upstream's base URL, e.g. http://127.0.0.1:8000/v1")
    return run(serve(parser.parse_args().upstream))


if __name__ == "__main__":
    raise SystemExit(main())
