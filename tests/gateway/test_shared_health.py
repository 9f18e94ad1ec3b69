"""Model health shared over PostgreSQL LISTEN/NOTIFY: a primary one gateway found dead is
skipped by every gateway on the same database, without a request of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from hermes_core.gateway import Gateway
from hermes_core.health.shared import CHANNEL
from hermes_core.pg_store import PostgresStore
from hermes_core.settings import ModelRef
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for
from hermes_core.testing.postgres import PostgresCluster

MakeGateway = Callable[..., Awaitable[Gateway]]
PRIMARY = ModelRef("local", "notfound-primary")
FALLBACK = "ok-fallback"


async def reaches(gateway: Gateway, state: str, timeout_s: float = 10.0) -> None:
    """Wait until ``gateway`` holds the primary in ``state`` (a notification is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while gateway.health.describe(PRIMARY)["state"] != state:
        assert time.monotonic() < deadline, f"the primary never went {state}"
        await asyncio.sleep(0.02)


def primary_requests(fake_openai: FakeOpenAI) -> int:
    return sum(request.model == PRIMARY.model for request in fake_openai.snapshot())


async def test_a_primary_one_gateway_opened_is_skipped_by_the_other(
    make_gateway: MakeGateway,
    fake_openai: FakeOpenAI,
    postgres_url: str,
    hook_recorder: HookRecorder,
) -> None:
    settings = settings_for(fake_openai.url, PRIMARY.model, [FALLBACK])
    a = await make_gateway(settings, PostgresStore(postgres_url))
    b = await make_gateway(settings, PostgresStore(postgres_url))

    first = (await send(a, "on a", "test:a")).result
    assert first is not None and first["fallback_used"]
    assert primary_requests(fake_openai) == 1  # the 404 opened the primary in a at once
    await reaches(b, "open")

    second = (await send(b, "on b", "test:b")).result
    assert second is not None and second["fallback_used"]
    assert str(second["final_response"]).startswith(f"[{FALLBACK}]")
    assert primary_requests(fake_openai) == 1  # b skipped it without sending it anything
    opened = [
        call
        for call in hook_recorder.of("on_health_change")
        if call["model"] == PRIMARY.model and call["state"] == "open"
    ]
    assert len(opened) == 2  # a's own transition, and b's applied one: the hook fires in both


async def test_a_closed_primary_reopens_in_the_other_gateway(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    settings = settings_for(fake_openai.url, PRIMARY.model, [FALLBACK])
    a = await make_gateway(settings, PostgresStore(postgres_url))
    b = await make_gateway(settings, PostgresStore(postgres_url))
    await send(a, "on a", "test:a")
    await reaches(b, "open")

    await a.health.report(PRIMARY, None)  # as a's probe answering reports it

    await reaches(b, "closed")
    assert a.health.describe(PRIMARY)["state"] == "closed"


async def test_a_gateway_on_an_unshared_store_publishes_nothing(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, errors_logged: list[str]
) -> None:
    settings = settings_for(fake_openai.url, PRIMARY.model, [FALLBACK])
    gateway = await make_gateway(settings)  # a MemoryStore

    results = [(await send(gateway, f"message {n}")).result for n in range(3)]

    assert not gateway.shared_health.active
    assert all(r is not None and r["fallback_used"] for r in results)
    assert primary_requests(fake_openai) == 1
    assert errors_logged == []


async def test_a_malformed_notification_is_logged_and_ignored(
    make_gateway: MakeGateway,
    fake_openai: FakeOpenAI,
    postgres_url: str,
    warnings_logged: list[str],
) -> None:
    settings = settings_for(fake_openai.url, PRIMARY.model, [FALLBACK])
    a = await make_gateway(settings, PostgresStore(postgres_url))
    b = await make_gateway(settings, PostgresStore(postgres_url))
    store = a.store
    assert isinstance(store, PostgresStore)

    await store.notify(CHANNEL, "not json")
    await send(a, "on a", "test:a")  # a well-formed one after it still arrives
    await reaches(b, "open")

    assert any("malformed notification on hermes_health" in line for line in warnings_logged)


async def test_a_gateway_listens_again_after_the_database_dropped_its_connection(
    make_gateway: MakeGateway,
    fake_openai: FakeOpenAI,
    postgres: PostgresCluster,
    postgres_url: str,
    warnings_logged: list[str],
) -> None:
    settings = settings_for(fake_openai.url, PRIMARY.model, [FALLBACK])
    a = await make_gateway(settings, PostgresStore(postgres_url))
    b = await make_gateway(settings, PostgresStore(postgres_url))
    database = postgres_url.rsplit("/", 1)[1]
    listeners = f"FROM pg_stat_activity WHERE datname = '{database}' AND query LIKE 'LISTEN %'"
    dropped = set(postgres.psql(f"SELECT pid {listeners}").split())
    assert len(dropped) == 2  # a's and b's

    postgres.psql(f"SELECT pg_terminate_backend(pid) {listeners}")
    deadline = time.monotonic() + 10
    while len(set(postgres.psql(f"SELECT pid {listeners}").split()) - dropped) < 2:
        assert time.monotonic() < deadline, "the gateways never listened again"
        await asyncio.sleep(0.05)

    await send(a, "on a", "test:a")
    await reaches(b, "open")  # news from a reaches b over b's new connection
    lost = [line for line in warnings_logged if "was lost; reconnecting" in line]
    assert len(lost) == 2
    assert all("password" not in line and ":***@" not in line for line in lost)
