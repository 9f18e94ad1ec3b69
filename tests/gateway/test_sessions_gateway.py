"""The gateway over the SQLite store: history across eviction and restart, durable session state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers_store import tmpfs

from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.runs import KEPT_TEXT, NOT_KEPT_TEXT
from hermes_core.settings import config_from_dict
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.store import MemoryStore, default_store_path
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for
from hermes_core.types import Session

MakeGateway = Callable[..., Awaitable[Gateway]]


@dataclass
class OnDisk:
    """Gateways, one after another, over one SQLite file."""

    make_gateway: MakeGateway
    path: Path

    async def start(self, settings: dict[str, Any]) -> Gateway:
        return await self.make_gateway(settings, store=SQLiteStore(self.path))

    async def restart(self, gateway: Gateway, settings: dict[str, Any]) -> Gateway:
        """Stop ``gateway`` and start a new one (new store connection, empty caches)."""
        await gateway.stop()
        return await self.start(settings)


@pytest.fixture
def on_disk(make_gateway: MakeGateway, tmp_path: Path) -> OnDisk:
    return OnDisk(make_gateway, tmp_path / "sessions.db")


async def test_eviction_after_a_successful_fallback_keeps_the_full_history(
    on_disk: OnDisk, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    settings = settings_for(fake_openai.url, "bad-primary", ["ok-fallback"])
    gateway = await on_disk.start(settings)

    replies = [(await send(gateway, text)).text for text in ("one", "two", "three")]

    # Every run fell back and was evicted, so each one ran on a new agent built from the store.
    assert [e["reason"] for e in hook_recorder.of("on_evict")] == ["fallback_succeeded"] * 3
    assert replies == [
        "[ok-fallback] one (user messages: 1)",
        "[ok-fallback] two (user messages: 2)",
        "[ok-fallback] three (user messages: 3)",
    ]
    # The retried primary got the whole conversation too.
    assert [m["content"] for m in fake_openai.requests_for("bad-primary")[-1].messages] == [
        "one",
        replies[0],
        "two",
        replies[1],
        "three",
    ]


async def test_model_override_survives_a_restart(on_disk: OnDisk, fake_openai: FakeOpenAI) -> None:
    settings = settings_for(fake_openai.url, "ok-primary")
    gateway = await on_disk.start(settings)
    assert (await send(gateway, "/model local:ok-chosen")).text.startswith("Model set")

    gateway = await on_disk.restart(gateway, settings)
    reply = await send(gateway, "hi")

    assert reply.text == "[ok-chosen] hi (user messages: 1)"
    assert [r.model for r in fake_openai.requests] == ["ok-chosen"]


async def test_breaker_count_survives_a_restart(on_disk: OnDisk, fake_openai: FakeOpenAI) -> None:
    settings = settings_for(fake_openai.url, "bad-primary", circuit_breaker={"threshold": 3})
    gateway = await on_disk.start(settings)
    for text in ("one", "two"):
        assert (await send(gateway, text)).failed

    gateway = await on_disk.restart(gateway, settings)
    fake_openai.clear()
    third = await send(gateway, "three")
    fourth = await send(gateway, "four")

    assert third.result is not None and third.result["error_kind"] == "non_retryable"
    # Two failures before the restart plus one after: the breaker is open.
    assert fourth.result is not None and fourth.result["error_kind"] == "circuit_open"
    assert "after 3 consecutive failed requests" in fourth.text
    assert "/reset" in fourth.text
    assert [r.model for r in fake_openai.requests] == ["bad-primary"]


async def test_failed_run_is_kept_marked_and_out_of_the_reloaded_history(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    gateway = await make_gateway(settings_for(fake_openai.url, "ok-primary"), store=store)
    await send(gateway, "one")
    await send(gateway, "/model local:bad-x")
    assert (await send(gateway, "two")).failed
    await send(gateway, "/model local:ok-primary")  # evicts: the next agent loads the store

    reply = await send(gateway, "three")

    assert reply.text == "[ok-primary] three (user messages: 2)"
    assert [m["content"] for m in fake_openai.requests[-1].messages] == [
        "one",
        "[ok-primary] one (user messages: 1)",
        "three",
    ]
    lines = await store.transcript("test:1")
    assert [(line.message["content"], line.status) for line in lines] == [
        ("one", "answered"),
        ("[ok-primary] one (user messages: 1)", "answered"),
        ("two", "failed"),
        ("three", "answered"),
        ("[ok-primary] three (user messages: 2)", "answered"),
    ]
    assert [line.model for line in lines] == ["local:ok-primary"] * 2 + ["local:bad-x"] + [
        "local:ok-primary"
    ] * 2


async def test_reset_starts_a_new_conversation_and_keeps_the_old_one(
    on_disk: OnDisk, fake_openai: FakeOpenAI
) -> None:
    settings = settings_for(fake_openai.url)
    gateway = await on_disk.start(settings)
    for text in ("a", "b", "/reset", "c"):
        await send(gateway, text)

    gateway = await on_disk.restart(gateway, settings)
    reply = await send(gateway, "d")

    assert reply.text == "[ok-primary] d (user messages: 2)"
    lines = await gateway.store.transcript("test:1")
    assert [(line.conversation, line.message["content"]) for line in lines][::2] == [
        (0, "a"),
        (0, "b"),
        (1, "c"),
        (1, "d"),
    ]


async def test_reloaded_history_is_bounded_by_max_history_messages(
    on_disk: OnDisk, fake_openai: FakeOpenAI
) -> None:
    settings = settings_for(fake_openai.url, agent={"max_history_messages": 4})
    gateway = await on_disk.start(settings)
    for text in ("one", "two", "three"):
        await send(gateway, text)

    gateway = await on_disk.restart(gateway, settings)
    fake_openai.clear()
    await send(gateway, "four")

    assert [m["content"] for m in fake_openai.requests[0].messages] == [
        "two",
        "[ok-primary] two (user messages: 2)",
        "three",
        "[ok-primary] three (user messages: 3)",
        "four",
    ]


@pytest.mark.slow
async def test_concurrent_sessions_through_the_gateway_keep_every_message_in_order(
    on_disk: OnDisk, fake_openai: FakeOpenAI
) -> None:
    # The full 100 x 20 load runs directly on the store (test_store_sqlite.py): through the
    # gateway each run is an HTTP round trip, and 2,000 of them take 30-45 s on 2 busy cores.
    # Fewer cached agents than sessions: LRU evictions force reloads from the store mid-way.
    settings = settings_for(fake_openai.url, cache={"max_agents": 4})
    gateway = await on_disk.start(settings)
    sessions, messages = 25, 8

    async def converse(number: int) -> list[str]:
        key = f"load:{number}"
        return [(await send(gateway, f"s{number} m{i}", key)).text for i in range(messages)]

    replies = await asyncio.gather(*(converse(n) for n in range(sessions)))
    await gateway.stop()

    for number, texts in enumerate(replies):
        assert texts == [
            f"[ok-primary] s{number} m{i} (user messages: {i + 1})" for i in range(messages)
        ]
    reopened = SQLiteStore(on_disk.path)
    await reopened.open()
    try:
        for number in range(sessions):
            lines = await reopened.transcript(f"load:{number}")
            assert [line.message["content"] for line in lines] == [
                text
                for i, reply in enumerate(replies[number])
                for text in (f"s{number} m{i}", reply)
            ]
            assert {line.status for line in lines} == {"answered"}
        assert len(await reopened.sessions()) == sessions
    finally:
        await reopened.close()


async def test_gateway_opens_the_store_named_by_store_path(
    plugin_host: PluginHost, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "chosen.db"
    old = Session(key="old:1", platform="test", last_active=time.time() - 10 * 86_400)
    recent = Session(key="recent:1", platform="test")
    seed = SQLiteStore(path)
    await seed.open()
    for session in (old, recent):
        await seed.save_session(session)
    await seed.close()

    settings = settings_for(fake_openai.url, store={"path": str(path), "retention_days": 5})
    gateway = Gateway(config_from_dict(settings), plugin_host)
    await gateway.start()
    try:
        assert isinstance(gateway.store, SQLiteStore) and gateway.store.path == path
        # store.retention_days pruned the session idle for 10 days at start-up.
        assert [s.key for s in await gateway.store.sessions()] == ["recent:1"]
    finally:
        await gateway.stop()


def test_store_defaults_to_the_user_data_dir_and_memory_on_request(
    plugin_host: PluginHost, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    default = Gateway(config_from_dict(settings_for(fake_openai.url)), plugin_host)
    assert isinstance(default.store, SQLiteStore)
    assert default.store.path == default_store_path()
    # The testing plugin points the user data dir at a temporary directory for each test.
    data_home = Path(os.environ["XDG_DATA_HOME"])
    assert data_home.is_relative_to(tmp_path.parent)
    assert default.store.path == data_home / "hermes-core" / "sessions.db"
    assert not default.store.path.exists()  # nothing is created before start()

    memory = settings_for(fake_openai.url, store={"path": ":memory:"})
    assert isinstance(Gateway(config_from_dict(memory), plugin_host).store, MemoryStore)


async def test_loaded_sessions_are_bounded_and_reload_from_the_store(
    on_disk: OnDisk, fake_openai: FakeOpenAI
) -> None:
    settings = settings_for(fake_openai.url, "ok-primary", cache={"max_sessions": 5})
    gateway = await on_disk.start(settings)
    await send(gateway, "/model local:ok-chosen", "test:first")
    for index in range(40):
        await send(gateway, f"hello {index}", f"test:{index}")
        assert len(gateway.sessions) <= 5
    assert "test:first" not in gateway.sessions  # unloaded long ago...
    # ...and loaded again, /model choice included, from the store.
    reply = await send(gateway, "back again", "test:first")
    assert reply.text == "[ok-chosen] back again (user messages: 1)"


async def test_idle_sessions_are_unloaded(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, cache={"idle_ttl_s": 0.2}))
    await send(gateway, "hello", "test:idle")
    assert "test:idle" in gateway.sessions
    deadline = time.monotonic() + 10
    while "test:idle" in gateway.sessions:
        assert time.monotonic() < deadline, "the idle session was never unloaded"
        await asyncio.sleep(0.05)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, so a test can fill the disk under a real SQLite store."""
    with tmpfs(tmp_path / "tiny", "2m") as mount:
        yield mount


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; returns the filler to delete."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    return filler


async def test_a_turn_the_store_could_not_commit_never_joins_the_agents_history(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, tiny_disk: Path
) -> None:
    path = tiny_disk / "sessions.db"
    gateway = await make_gateway(settings_for(fake_openai.url), store=SQLiteStore(path))
    assert not (await send(gateway, "one")).failed
    await send(gateway, "/model local:slow-1-answer")  # a run that takes a second

    run = asyncio.create_task(send(gateway, "lost " + "x" * 4000))
    deadline = time.monotonic() + 10
    while not fake_openai.requests_for("slow-1-answer"):  # begin_run has committed
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    filler = fill(tiny_disk)
    reply = await run
    filler.unlink()

    assert reply.result is not None and reply.result["error_kind"] == "internal"
    assert reply.text == KEPT_TEXT  # the user's message did reach the store, as pending
    await send(gateway, "/model local:ok-primary")
    assert (await send(gateway, "two")).text == "[ok-primary] two (user messages: 2)"
    sent = [m["content"] for m in fake_openai.requests_for("ok-primary")[-1].messages]
    assert sent == ["one", "[ok-primary] one (user messages: 1)", "two"]
    lines = await gateway.store.transcript("test:1")
    assert [line.status for line in lines if line.message["content"].startswith("lost")] == [
        "pending"
    ]


async def test_a_message_the_store_could_not_take_is_not_said_to_be_kept(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, tiny_disk: Path
) -> None:
    gateway = await make_gateway(
        settings_for(fake_openai.url), store=SQLiteStore(tiny_disk / "sessions.db")
    )
    assert not (await send(gateway, "one")).failed
    filler = fill(tiny_disk)
    try:
        reply = await send(gateway, "too big to store " + "y" * 100_000)
    finally:
        filler.unlink()
    assert reply.result is not None and reply.result["error_kind"] == "internal"
    assert reply.text == NOT_KEPT_TEXT
    assert fake_openai.requests_for("ok-primary")[-1].messages[-1]["content"] == "one"
