"""Requests per second with 1,000 concurrent sessions over HTTP, against the scripted server alone.

Every session sends ``--per-session`` messages one after another; all sessions run at once,
through one ``httpx2.AsyncClient`` limited to ``--connections`` connections. The same load goes
to ``hermes-core run`` (``http`` platform, in-memory store, default cache) and, as the
baseline, straight to the scripted OpenAI server, with each session's history in the request
as a stateless client must send it. A warm-up of a few sessions each way is not counted.

    .venv/bin/python bench/throughput.py [--sessions 1000] [--per-session 2] [--connections 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx2
from support import MODEL, Row, hermes_http, scripted_server

#: Sends message ``turn`` of session ``key`` and checks the answer.
Send = Callable[[httpx2.AsyncClient, str, int], Awaitable[None]]
WARM_UP_SESSIONS = 10
#: Bounds one request; a stuck run fails the benchmark instead of hanging it.
TIMEOUT_S = 120.0


def _check(response: httpx2.Response, turn: int) -> None:
    response.raise_for_status()
    if "X-Hermes-Error-Kind" in response.headers:
        raise RuntimeError(f"run failed: {response.text}")
    reply = response.json()["choices"][0]["message"]["content"]
    # The scripted server counts the user messages it got: proof the history went along.
    if f"(user messages: {turn + 1})" not in reply:
        raise RuntimeError(f"unexpected reply to message {turn}: {reply!r}")


def to_hermes(url: str) -> Send:
    """Only the new message; hermes-core keeps the session's history."""

    async def send(client: httpx2.AsyncClient, key: str, turn: int) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"message {turn}"}]}
        response = await client.post(
            f"{url}/v1/chat/completions", json=body, headers={"X-Hermes-Session": key}
        )
        _check(response, turn)

    return send


def to_server(url: str) -> Send:
    """The whole conversation so far, straight to the scripted server."""

    async def send(client: httpx2.AsyncClient, key: str, turn: int) -> None:
        # The scripted answer depends only on the user messages, so the history is rebuilt
        # rather than kept: what goes over the wire is the same.
        messages: list[dict[str, str]] = []
        for earlier in range(turn):
            messages.append({"role": "user", "content": f"message {earlier}"})
            messages.append({"role": "assistant", "content": f"answer {earlier}"})
        messages.append({"role": "user", "content": f"message {turn}"})
        response = await client.post(
            f"{url}/chat/completions", json={"model": MODEL, "messages": messages}
        )
        _check(response, turn)

    return send


async def load(send: Send, prefix: str, sessions: int, per_session: int, connections: int) -> float:
    """Requests per second for ``sessions`` concurrent sessions of ``per_session`` messages."""
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx2.AsyncClient(limits=limits, timeout=TIMEOUT_S) as client:

        async def session(number: int) -> None:
            for turn in range(per_session):
                await send(client, f"{prefix}:{number}", turn)

        warm_up = min(WARM_UP_SESSIONS, sessions)
        await asyncio.gather(*(session(-1 - n) for n in range(warm_up)))
        started = time.perf_counter()
        await asyncio.gather(*(session(n) for n in range(sessions)))
        return sessions * per_session / (time.perf_counter() - started)


async def rows(
    server_url: str, sessions: int = 1000, per_session: int = 2, connections: int = 100
) -> list[Row]:
    """hermes-core's requests/s against the scripted server's, the same load for both."""
    alone = await load(to_server(server_url), "alone", sessions, per_session, connections)
    with hermes_http(server_url) as hermes_url:
        hermes = await load(to_hermes(hermes_url), "hermes", sessions, per_session, connections)
    label = f"throughput, {sessions:,} sessions over HTTP vs server alone"
    return [Row(label, hermes, "req/s", alone)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--per-session", type=int, default=2)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    with scripted_server() as url:
        (row,) = await rows(url, args.sessions, args.per_session, args.connections)
    print(f"hermes-core {row.value:.0f} req/s, scripted server alone {row.baseline:.0f} req/s")


if __name__ == "__main__":
    asyncio.run(main())
