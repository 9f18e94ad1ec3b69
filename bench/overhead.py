"""What hermes-core adds to each message, against a bare ``openai`` SDK call.

The same short conversations (``--per-session`` messages each) go to the scripted OpenAI
server two ways, one conversation each way in turn so that both see the same machine state:

- **bare SDK**: an ``openai.AsyncOpenAI`` client sends the whole conversation so far to the
  scripted server, as a stateless client must;
- **hermes-core**: the same client sends only the new message to ``hermes-core run`` (the
  ``http`` platform, session in ``X-Hermes-Session``), which adds the session's history and
  makes the same request to the same server; or, in process, ``Gateway.handle`` does;
- **SDK raw post** (in-process comparison only): the bare client's generic ``post``, which is
  the call hermes-core's provider makes; it skips ``create``'s per-message request validation,
  so it isolates what the gateway itself adds.

Latency is per message, one message at a time, after one warm-up conversation each way.

    .venv/bin/python bench/overhead.py [--messages 200] [--per-session 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import openai
from openai.types.chat import ChatCompletion
from support import MODEL, Row, hermes_http, percentile, scripted_server

from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.store import MemoryStore
from hermes_core.testing import message, settings_for

#: Sends message ``turn`` (0-based) of conversation ``key``; returns the reply text.
Send = Callable[[str, int], Awaitable[str]]


def _expect(reply: str, turn: int) -> str:
    """The scripted server counts the user messages it was sent: proof the history was."""
    if f"(user messages: {turn + 1})" not in reply:
        raise RuntimeError(f"unexpected reply to message {turn}: {reply!r}")
    return reply


#: Sends a whole conversation (OpenAI message dicts) and returns the completion.
Complete = Callable[[list[dict[str, str]]], Awaitable[ChatCompletion]]


def stateless(complete: Complete) -> Send:
    """A stateless client: it keeps each conversation and sends all of it every time."""
    histories: dict[str, list[dict[str, str]]] = {}

    async def send(key: str, turn: int) -> str:
        history = histories.setdefault(key, [])
        history.append({"role": "user", "content": f"message {turn}"})
        response = await complete(history)
        reply = response.choices[0].message.content or ""
        history.append({"role": "assistant", "content": reply})
        return _expect(reply, turn)

    return send


def bare_sdk(client: openai.AsyncOpenAI) -> Send:
    """:func:`stateless` over the SDK's ``chat.completions.create``."""

    async def complete(history: list[dict[str, str]]) -> ChatCompletion:
        return await client.chat.completions.create(
            model=MODEL,
            messages=history,  # type: ignore[arg-type]  # plain dicts of the same shape
        )

    return stateless(complete)


def raw_post(client: openai.AsyncOpenAI) -> Send:
    """:func:`stateless` through the client's generic ``post`` (no request validation)."""

    async def complete(history: list[dict[str, str]]) -> ChatCompletion:
        body = {"model": MODEL, "messages": history}
        return await client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    return stateless(complete)


def via_http(client: openai.AsyncOpenAI) -> Send:
    """The same SDK talking to hermes-core's ``http`` platform: only the new message."""

    async def send(key: str, turn: int) -> str:
        response = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"message {turn}"}],
            extra_headers={"X-Hermes-Session": key},
        )
        return _expect(response.choices[0].message.content or "", turn)

    return send


def via_gateway(gateway: Gateway) -> Send:
    """``Gateway.handle`` in this process."""

    async def send(key: str, turn: int) -> str:
        reply = await gateway.handle(message(f"message {turn}", key))
        if reply.result is None or reply.result["failed"]:
            raise RuntimeError(f"run failed: {reply.text}")
        return _expect(reply.text, turn)

    return send


async def compare(senders: list[Send], messages: int, per_session: int) -> list[list[float]]:
    """Seconds per message for each sender, taking turns one conversation at a time."""
    timings: list[list[float]] = [[] for _ in senders]
    conversations = max(messages // per_session, 1)
    # Conversation -1 warms up connections and lazy imports on every side; not timed.
    for number in range(-1, conversations):
        for send, samples in zip(senders, timings, strict=True):
            key = f"bench:{number}"
            for turn in range(per_session):
                started = time.perf_counter()
                await send(key, turn)
                if number >= 0:
                    samples.append(time.perf_counter() - started)
    return timings


def latency_rows(label: str, measured: list[float], baseline: list[float]) -> list[Row]:
    """Median and p95 milliseconds per message, each against the baseline's."""
    return [
        Row(
            f"{label}, median",
            statistics.median(measured) * 1000,
            "ms/msg",
            statistics.median(baseline) * 1000,
        ),
        Row(
            f"{label}, p95",
            percentile(measured, 95) * 1000,
            "ms/msg",
            percentile(baseline, 95) * 1000,
        ),
    ]


def sdk_client(base_url: str) -> openai.AsyncOpenAI:
    """An SDK client as an application would make it (no hidden retries)."""
    return openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=60)


async def http_rows(server_url: str, messages: int = 200, per_session: int = 5) -> list[Row]:
    """hermes-core over HTTP (a ``hermes-core run`` process) vs the bare SDK."""
    with hermes_http(server_url) as hermes_url:
        async with sdk_client(server_url) as bare, sdk_client(f"{hermes_url}/v1") as hermes:
            measured, baseline = await compare(
                [via_http(hermes), bare_sdk(bare)], messages, per_session
            )
    return latency_rows("latency over HTTP vs bare SDK", measured, baseline)


async def gateway_rows(server_url: str, messages: int = 200, per_session: int = 5) -> list[Row]:
    """``Gateway.handle`` in this process (in-memory store) vs the bare SDK, and vs the SDK's
    raw ``post``, the call hermes-core's provider makes."""
    host = PluginHost()
    host.load(entry_points=False)
    config = config_from_dict(settings_for(server_url, MODEL))
    async with (
        Gateway(config, host, store=MemoryStore()) as gateway,
        sdk_client(server_url) as bare,
        sdk_client(server_url) as raw,
    ):
        measured, baseline, posted = await compare(
            [via_gateway(gateway), bare_sdk(bare), raw_post(raw)], messages, per_session
        )
    rows = latency_rows("latency in process vs bare SDK", measured, baseline)
    median = statistics.median
    label = "latency in process vs SDK raw post, median"
    return [*rows, Row(label, median(measured) * 1000, "ms/msg", median(posted) * 1000)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--per-session", type=int, default=5)
    args = parser.parse_args()
    with scripted_server() as url:
        rows = await http_rows(url, args.messages, args.per_session)
        rows += await gateway_rows(url, args.messages, args.per_session)
    for row in rows:
        print(f"{row.benchmark:<44}{row.value:9.3f} {row.unit}  baseline {row.baseline:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
