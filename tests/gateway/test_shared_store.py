"""Two gateways on one PostgreSQL database (two processes, as far as the store can tell):
each notices what the other did to a session before its next run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hermes_core.gateway import Gateway
from hermes_core.pg_store import PostgresStore
from hermes_core.testing import FakeOpenAI, send

MakeGateway = Callable[..., Awaitable[Gateway]]


async def two_gateways(make_gateway: MakeGateway, url: str) -> tuple[Gateway, Gateway]:
    return await make_gateway(store=PostgresStore(url)), await make_gateway(
        store=PostgresStore(url)
    )


def user_texts(fake_openai: FakeOpenAI) -> list[list[str]]:
    """The user messages each upstream request carried, in request order."""
    return [
        [m["content"] for m in request.messages if m["role"] == "user"]
        for request in fake_openai.snapshot()
    ]


async def test_a_cached_agent_reloads_history_another_process_extended(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    a, b = await two_gateways(make_gateway, postgres_url)
    for gateway, text in [(a, "one"), (b, "two"), (a, "three"), (a, "four"), (b, "five")]:
        reply = await send(gateway, text)
        assert not reply.failed, reply.text
    assert user_texts(fake_openai) == [
        ["one"],
        ["one", "two"],
        ["one", "two", "three"],
        ["one", "two", "three", "four"],
        ["one", "two", "three", "four", "five"],
    ]
    assert [line.message["content"] for line in await a.store.transcript("test:1")][::2] == [
        "one",
        "two",
        "three",
        "four",
        "five",
    ]


async def test_reset_and_model_in_one_process_reach_the_other(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    a, b = await two_gateways(make_gateway, postgres_url)
    await send(a, "before")
    await send(b, "/reset")
    await send(a, "after reset")
    await send(a, "/model local:ok-other")
    reply = await send(b, "on the other model")
    requests = fake_openai.snapshot()
    assert [m["content"] for m in requests[1].messages if m["role"] == "user"] == ["after reset"]
    assert requests[2].model == "ok-other" and reply.result is not None
    assert reply.result["model"] == "local:ok-other"
