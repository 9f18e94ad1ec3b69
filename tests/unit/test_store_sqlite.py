"""The stores: the Store contract on both implementations, and what only SQLite does."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers_store import corrupt_table, remount_read_only, tmpfs, write_session

from hermes_core import sqlite_schema
from hermes_core.errors import ConfigError
from hermes_core.pg_store import PostgresStore
from hermes_core.sqlite_schema import store_file_error
from hermes_core.sqlite_store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Access,
    SQLiteStore,
    check_store_file,
)
from hermes_core.store import FinishedRun, MemoryStore, StaleSession, Store, bounded_history
from hermes_core.testing import captured_logs
from hermes_core.types import Session


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each Store implementation, opened (the SQLite one on a new file, the PostgreSQL one on
    a new database of the test session's cluster)."""
    opened: Store
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "s.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_url"))
    await opened.open()
    yield opened
    await opened.close()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


async def answered(store: Store, session: Session, run_id: str, *added: dict[str, Any]) -> None:
    """One run as the gateway writes it: the user message first, then what the run added."""
    await store.begin_run(session, run_id, added[0])
    await store.finish_run(session, FinishedRun(run_id, list(added[1:]), "local:ok"))


async def test_history_holds_answered_runs_of_the_current_conversation(store: Store) -> None:
    session = Session(key="k", platform="test")
    await answered(store, session, "r1", user("one"), assistant("1"))
    await store.begin_run(session, "r2", user("failed"))
    await store.finish_run(session, FinishedRun("r2", None, "local:bad"))
    await store.begin_run(session, "r3", user("in flight"))
    assert await store.history(session, 100) == [user("one"), assistant("1")]

    session.conversation += 1
    assert await store.history(session, 100) == []
    await answered(store, session, "r4", user("two"), assistant("2"))
    assert await store.history(session, 100) == [user("two"), assistant("2")]

    statuses = [(line.message["content"], line.status) for line in await store.transcript("k")]
    assert statuses == [
        ("one", "answered"),
        ("1", "answered"),
        ("failed", "failed"),
        ("in flight", "pending"),
        ("two", "answered"),
        ("2", "answered"),
    ]


async def test_bounded_history_never_starts_with_an_orphan_tool_result(store: Store) -> None:
    session = Session(key="k", platform="test")
    call = {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    await answered(store, session, "r1", user("first"), assistant("ok"))
    await answered(
        store,
        session,
        "r2",
        user("what time is it?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
        assistant("noon"),
    )

    # The last 2 messages would start at a tool result whose call was cut off.
    assert await store.history(session, 2) == [assistant("noon")]
    assert await store.history(session, 3) == [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
        assistant("noon"),
    ]
    assert len(await store.history(session, 100)) == 6


def test_bounded_history_takes_the_most_recent_messages() -> None:
    turns = [user("a"), assistant("A"), user("b"), assistant("B")]
    assert bounded_history(turns, 3) == [assistant("A"), user("b"), assistant("B")]
    assert bounded_history(turns, 10) == turns
    assert bounded_history(turns, 0) == []


async def test_sessions_summary_and_prune(store: Store) -> None:
    now = time.time()
    old = Session(key="old", platform="console", last_active=now - 40 * 86_400)
    new = Session(key="new", platform="http", user_id="u", model="local:ok-x", last_active=now)
    await store.save_session(old)
    await answered(store, old, "r1", user("hi"), assistant("hello"))
    await store.begin_run(new, "r2", user("unanswered"))
    await store.save_session(new)

    summaries = await store.sessions()
    assert [(s.key, s.messages, s.unanswered) for s in summaries] == [("new", 1, 1), ("old", 2, 0)]
    assert (summaries[0].platform, summaries[0].user_id, summaries[0].model) == (
        "http",
        "u",
        "local:ok-x",
    )
    assert [s.key for s in await store.sessions("console")] == ["old"]

    assert await store.prune(now - 30 * 86_400) == 1
    assert [s.key for s in await store.sessions()] == ["new"]
    assert await store.transcript("old") == []
    assert await store.load_session("old") is None


async def test_session_state_round_trips(store: Store) -> None:
    session = Session(
        key="console:local",
        platform="console",
        user_id="local",
        model="local:ok-chosen",
        data={"circuit_breaker": {"failures": 2, "last_error": "HTTP 400"}},
        conversation=3,
        created_at=1_000.5,
        last_active=2_000.25,
    )
    await store.save_session(session)
    loaded = await store.load_session("console:local")
    assert loaded == session
    assert loaded is not session and loaded.data is not session.data
    assert await store.load_session("unknown") is None


async def test_sqlite_store_keeps_everything_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    session = Session(key="k", platform="test", data={"circuit_breaker": {"failures": 1}})
    call = {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    messages = [
        user("time?"),
        {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None},
        {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
        {"role": "assistant", "content": [{"type": "text", "text": "noon"}]},
    ]
    first = SQLiteStore(path)
    await first.open()
    await answered(first, session, "r1", *messages)
    await first.save_session(session)
    await first.close()

    second = SQLiteStore(path)
    await second.open()
    try:
        assert await second.load_session("k") == session
        lines = await second.transcript("k")
        assert [line.message for line in lines] == messages
        assert {(line.run_id, line.model, line.status) for line in lines} == {
            ("r1", "local:ok", "answered")
        }
    finally:
        await second.close()


@pytest.mark.slow
async def test_100_sessions_x_20_messages_written_concurrently(tmp_path: Path) -> None:
    """Directly through the store, with the gateway's write pattern: each session's runs one
    after another (begin_run, then finish_run), 100 sessions at once, one run in 5 failing."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    sessions, messages = 100, 20

    async def converse(number: int) -> None:
        session = Session(key=f"load:{number}", platform="test")
        for i in range(messages):
            run_id = f"{number}-{i}"
            await store.begin_run(session, run_id, user(f"s{number} m{i}"))
            await asyncio.sleep(0)  # let other sessions interleave mid-run
            added = None if i % 5 == 4 else [assistant(f"a{number} {i}")]
            await store.finish_run(session, FinishedRun(run_id, added, "local:ok"))
            session.last_active = time.time()
            await store.save_session(session)

    await asyncio.gather(*(converse(n) for n in range(sessions)))
    await store.close()

    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        assert len(await reopened.sessions()) == sessions
        for number in range(sessions):
            expected: list[tuple[str, str]] = []
            for i in range(messages):
                if i % 5 == 4:
                    expected.append((f"s{number} m{i}", "failed"))
                else:
                    expected += [(f"s{number} m{i}", "answered"), (f"a{number} {i}", "answered")]
            lines = await reopened.transcript(f"load:{number}")
            assert [(line.message["content"], line.status) for line in lines] == expected
    finally:
        await reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (100 * (16 * 2 + 4),)
    db.close()


async def test_new_store_is_versioned_marked_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "s.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert {"sessions", "messages"} <= tables
    assert check_store_file(path) == SCHEMA_VERSION


async def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.touch()
    store = SQLiteStore(path)
    await store.open()
    await store.save_session(Session(key="k", platform="test"))
    await store.close()
    assert check_store_file(path) == SCHEMA_VERSION


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def other_application(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    db.close()


def newer_hermes(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
        db.execute("CREATE TABLE sessions (key TEXT)")
    db.close()


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 40)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (garbage, "is not a SQLite database"),
        (other_application, "is a SQLite database of another application"),
        (newer_hermes, f"schema version {SCHEMA_VERSION + 5}; this version reads up to"),
    ],
    ids=["garbage", "other-application", "newer-schema"],
)
async def test_unusable_file_raises_config_error_and_stays_untouched(
    tmp_path: Path, make: Any, problem: str
) -> None:
    path = tmp_path / "s.db"
    make(path)
    before = digest(path)

    with pytest.raises(ConfigError) as raised:
        await SQLiteStore(path).open()

    assert raised.value.key == "store.path"
    assert problem in str(raised.value) and str(path) in str(raised.value)
    assert digest(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.db"]


async def test_directory_instead_of_a_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a file"):
        await SQLiteStore(tmp_path).open()


async def test_one_failing_write_fails_alone_in_a_group_commit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        sessions = [Session(key=f"k{n}", platform="test") for n in range(3)]
        # Queued together, so they share one transaction.
        outcomes = await asyncio.gather(
            store.save_session(sessions[0]),
            store._write(lambda db: db.execute("INSERT INTO no_such_table VALUES (1)")),
            store.save_session(sessions[1]),
            store.save_session(sessions[2]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], sqlite3.OperationalError)
        assert [o for i, o in enumerate(outcomes) if i != 1] == [None, None, None]
        assert sorted(s.key for s in await store.sessions()) == ["k0", "k1", "k2"]
    finally:
        await store.close()


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    writes = [
        asyncio.create_task(store.save_session(Session(key=f"k{n}", platform="test")))
        for n in range(50)
    ]
    await asyncio.sleep(0)  # every write is queued
    await store.close()
    await asyncio.gather(*writes)

    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone() == (50,)
    db.close()
    with pytest.raises(RuntimeError, match="is not open"):
        await store.save_session(Session(key="late", platform="test"))


async def test_second_owner_is_refused_while_readers_and_pruners_are_not(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    owner = SQLiteStore(path)
    await owner.open()
    try:
        assert (tmp_path / "s.db.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(ConfigError) as refused:
            await SQLiteStore(path).open()
        assert str(refused.value) == (
            f"store.path: {path} is in use by this process (pid {os.getpid()}); one store "
            "serves one gateway: stop that one, or point store.path at another file"
        )
        for access in (Access.READ, Access.SHARED):
            beside = SQLiteStore(path, access=access)
            await beside.open()
            assert await beside.sessions() == []
            await beside.close()
    finally:
        await owner.close()
    assert not (tmp_path / "s.db.lock").exists()  # released: the next owner may start
    successor = SQLiteStore(path)
    await successor.open()
    await successor.close()


async def test_read_only_access_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await write_session(path)
    before = digest(path)
    reader = SQLiteStore(path, access=Access.READ)
    await reader.open()
    try:
        lines = await reader.transcript("console:local")
        assert [line.message["content"] for line in lines] == ["hello", "hi"]
        with pytest.raises(RuntimeError, match="is not open for writing"):
            await reader.save_session(Session(key="new", platform="test"))
    finally:
        await reader.close()
    assert digest(path) == before
    assert not (tmp_path / "s.db.lock").exists()


@pytest.mark.parametrize("access", list(Access), ids=[a.value for a in Access])
async def test_damaged_page_is_refused_at_open_and_left_alone(
    tmp_path: Path, access: Access
) -> None:
    path = tmp_path / "s.db"
    await write_session(path)
    corrupt_table(path, "messages")
    before = digest(path)

    with pytest.raises(ConfigError) as raised:
        await SQLiteStore(path, access=access).open()

    assert str(raised.value).startswith(f"store.path: {path} is damaged (")
    assert "restore it from a backup" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert digest(path) == before
    assert not (tmp_path / "s.db.lock").exists()


@pytest.mark.slow
async def test_integrity_check_at_open_is_bounded_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    await asyncio.gather(
        *(store.save_session(Session(key=f"k{n}", platform="test")) for n in range(2000))
    )
    await store.close()
    monkeypatch.setattr(sqlite_schema, "QUICK_CHECK_BUDGET_S", -1.0)  # spent before it starts
    with captured_logs("WARNING") as warnings:
        reopened = SQLiteStore(path)
        await reopened.open()  # a check cut short is not a failure
        assert len(await reopened.sessions()) == 2000
        await reopened.close()
    assert warnings == [
        f"store {path}: the integrity check at open stopped after -1.0 s (the file has 0 MB); "
        "hermes-core doctor runs the full check"
    ]


async def test_store_on_a_read_only_file_system_is_read_only_not_garbage(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "mnt") as mount:
        path = mount / "s.db"
        await write_session(path)
        remount_read_only(mount)

        with pytest.raises(ConfigError) as raised:
            await SQLiteStore(path).open()
        assert str(raised.value).startswith(
            f"store.path: {path} is read-only (read-only file system); "
        )
        # Reading still works: nothing needs to be written to list or show sessions.
        reader = SQLiteStore(path, access=Access.READ)
        await reader.open()
        try:
            assert [s.key for s in await reader.sessions()] == ["console:local"]
        finally:
            await reader.close()


def crash_after_writing(path: Path) -> None:
    """A process writes to the WAL of ``path`` and dies without closing: -wal and -shm stay."""
    code = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA journal_mode = WAL')\n"
        "db.execute(\"UPDATE sessions SET platform = 'crashed'\")\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


async def test_readonly_database_writes_are_reported_as_read_only(tmp_path: Path) -> None:
    """With a -wal left behind, SQLite opens the file on a read-only file system and only a
    write fails ("attempt to write a readonly database"): the owner's lock file fails first."""
    with tmpfs(tmp_path / "mnt") as mount:
        path = mount / "s.db"
        await write_session(path)
        crash_after_writing(path)
        remount_read_only(mount)

        with pytest.raises(ConfigError) as refused:
            await SQLiteStore(path).open()
        assert str(refused.value).startswith(f"store.path: {path} is read-only (")
        pruner = SQLiteStore(path, access=Access.SHARED)
        await pruner.open()
        try:
            with pytest.raises(sqlite3.OperationalError) as raised:
                await pruner.prune(time.time())
            assert raised.value.sqlite_errorname == "SQLITE_READONLY"
            assert str(store_file_error(path, raised.value)).startswith(
                f"store.path: {path} is read-only (read-only file system); "
            )
            assert [s.platform for s in await pruner.sessions()] == ["crashed"]  # the WAL's
        finally:
            await pruner.close()


async def test_disk_full_fails_every_write_of_the_commit_and_stores_none(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "mnt", size="1m") as mount:
        store = SQLiteStore(mount / "s.db")
        await store.open()
        try:
            small, large = Session(key="small", platform="test"), Session(key="big", platform="t")
            for session in (small, large):
                await store.begin_run(session, f"run-{session.key}", user("question"))
            # Queued together: one commit, and the large answer does not fit on the disk.
            outcomes = await asyncio.gather(
                store.finish_run(small, FinishedRun("run-small", [assistant("ok")])),
                store.finish_run(large, FinishedRun("run-big", [assistant("x" * 3_000_000)])),
                return_exceptions=True,
            )
            for outcome in outcomes:
                assert isinstance(outcome, sqlite3.OperationalError)
                assert str(outcome) == "database or disk is full"
            # Nothing of the failed commit is stored, and the store goes on working.
            for key in ("small", "big"):
                assert [line.status for line in await store.transcript(key)] == ["pending"]
            await store.finish_run(small, FinishedRun("run-small", [assistant("ok")]))
            assert [line.status for line in await store.transcript("small")] == ["answered"] * 2
        finally:
            await store.close()


async def test_a_write_from_a_stale_copy_is_refused_and_stores_nothing(store: Store) -> None:
    session = Session(key="k", platform="test")
    await answered(store, session, "r1", user("one"), assistant("1"))
    stale = await store.load_session("k")
    fresh = await store.load_session("k")
    assert stale is not None and fresh is not None and stale.version == session.version
    await answered(store, fresh, "r2", user("two"), assistant("2"))  # another process ran it

    with pytest.raises(StaleSession):
        await store.begin_run(stale, "r3", user("late"))
    with pytest.raises(StaleSession):
        await store.save_session(stale)
    # A run begun before the other process's write cannot finish after it (the fence).
    with pytest.raises(StaleSession):
        await store.finish_run(session, FinishedRun("r1", [assistant("late answer")], "local:ok"))
    assert [line.message["content"] for line in await store.transcript("k")] == [
        "one",
        "1",
        "two",
        "2",
    ]
    loaded = await store.load_session("k")
    assert loaded is not None and loaded.version == fresh.version > stale.version


async def test_a_version_1_store_is_migrated_and_keeps_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:  # a store as version 1 wrote it
        for statement in sqlite_schema.MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO sessions VALUES ('k', 'test', NULL, NULL, '{}', 0, 1.0, 2.0)")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.commit()
    store = SQLiteStore(path)
    await store.open()
    session = await store.load_session("k")
    assert session is not None and session.version == 0
    await store.save_session(session)
    assert session.version == 1
    await store.close()
    assert check_store_file(path) == SCHEMA_VERSION == 2
