"""What only the PostgreSQL store does: the run lock shared by processes, its schema and
migrations, and one clear line for every way its database cannot be used. The Store contract
itself runs on PostgreSQL in test_store_sqlite.py (the ``store`` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hermes_core.errors import ConfigError
from hermes_core.pg_schema import SCHEMA_VERSION
from hermes_core.pg_store import NoStore, PostgresStore
from hermes_core.settings import config_from_dict
from hermes_core.store import FinishedRun
from hermes_core.store_config import store_from_config
from hermes_core.testing import settings_for
from hermes_core.testing.postgres import PASSWORD, PostgresCluster, free_port, running
from hermes_core.types import Session


@pytest.fixture
async def two_stores(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, each with its own pool: two gateway processes."""
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    await first.open()
    await second.open()
    yield first, second
    await second.close()
    await first.close()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def test_run_lock_makes_another_process_wait_and_hands_it_the_new_version(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two_stores
    session = Session(key="http:a", platform="http")
    async with first.hold("http:a") as stored:
        assert stored is None  # no row yet
        waiter = asyncio.create_task(_hold_once(second, "http:a"))
        await asyncio.sleep(0.3)
        assert not waiter.done()  # the other process waits while this one runs
        await first.begin_run(session, "r1", user("hi"))
        await first.finish_run(
            session, FinishedRun("r1", [{"role": "assistant", "content": "yo"}], "m")
        )
    # Read under the lock, after the holder's commits: the waiter sees the new version.
    assert await asyncio.wait_for(waiter, 5) == session.version == 1


async def _hold_once(store: PostgresStore, key: str) -> int | None:
    async with store.hold(key) as stored:
        return stored


async def test_different_sessions_do_not_wait_for_each_other(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two_stores
    async with first.hold("http:a"):
        assert await asyncio.wait_for(_hold_once(second, "http:b"), 2) is None


async def test_a_cancelled_wait_leaves_no_lock_behind(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two_stores
    async with first.hold("http:a"):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_hold_once(second, "http:a"), 0.3)
    # Had the cancelled waiter kept a lock (granted as the cancel arrived), this would hang.
    assert await asyncio.wait_for(_hold_once(first, "http:a"), 2) is None
    assert await asyncio.wait_for(_hold_once(second, "http:a"), 2) is None


async def test_the_lock_dies_with_its_connection(
    two_stores: tuple[PostgresStore, PostgresStore], postgres: PostgresCluster
) -> None:
    first, second = two_stores
    async with first.hold("http:a"):
        waiter = asyncio.create_task(_hold_once(second, "http:a"))
        await asyncio.sleep(0.2)
        # The server drops the holder's connection, as when its process is killed.
        postgres.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
        )
        assert await asyncio.wait_for(waiter, 5) is None


async def test_a_holders_writes_never_wait_for_a_pool_connection(postgres_url: str) -> None:
    # Two connections, both holding a run lock: the runs' writes go over the lock connections.
    store = PostgresStore(postgres_url, pool_size=2)
    await store.open()
    try:

        async def run(key: str) -> None:
            session = Session(key=key, platform="http")
            async with store.hold(key):
                await asyncio.sleep(0.1)  # both locks held at once
                await store.begin_run(session, f"{key}-r", user("hi"))
                await store.finish_run(session, FinishedRun(f"{key}-r", [], "m"))
                await store.save_session(session)
                assert await store.history(session, 10) == [user("hi")]

        await asyncio.wait_for(asyncio.gather(run("a"), run("b")), 5)
    finally:
        await store.close()


async def test_schema_is_versioned_and_migrating_again_changes_nothing(
    postgres_url: str, postgres: PostgresCluster
) -> None:
    for _ in range(2):
        store = PostgresStore(postgres_url)
        await store.open()
        assert await store.schema_version() == SCHEMA_VERSION
        await store.close()
    database = postgres_url.rsplit("/", 1)[1]
    assert postgres.psql("SELECT count(*) FROM hermes_schema_version", database) == "1"


async def test_a_store_of_a_newer_hermes_core_is_refused(
    postgres_url: str, postgres: PostgresCluster
) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    database = postgres_url.rsplit("/", 1)[1]
    postgres.psql(f"UPDATE hermes_schema_version SET version = {SCHEMA_VERSION + 1}", database)
    with pytest.raises(ConfigError, match="newer hermes-core"):
        await PostgresStore(postgres_url).open()


async def test_without_migrating_a_database_without_the_schema_is_refused(
    postgres_url: str,
) -> None:
    with pytest.raises(NoStore, match="holds no hermes-core store yet"):
        await PostgresStore(postgres_url, migrate=False).open()


async def test_password_comes_from_password_env(
    postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.url(postgres.create_database(), password=False)
    settings = settings_for(
        "http://127.0.0.1:9", store={"url": url, "password_env": "TEST_PG_PASSWORD"}
    )
    monkeypatch.delenv("TEST_PG_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="TEST_PG_PASSWORD is not set"):
        store_from_config(config_from_dict(settings))

    monkeypatch.setenv("TEST_PG_PASSWORD", PASSWORD)
    store = store_from_config(config_from_dict(settings))
    await store.open()
    assert isinstance(store, PostgresStore) and await store.schema_version() == SCHEMA_VERSION
    await store.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"mysql://hermes:{PASSWORD}@127.0.0.1/db", "is not a PostgreSQL URL"),
        (f"postgresql://hermes:{PASSWORD}@127.0.0.1:5432", "names no database"),
        (f"postgresql://hermes:{PASSWORD}@:5432/db", "names no host"),
        (f"postgresql://hermes:{PASSWORD}@127.0.0.1:port/db", "is not a valid URL"),
    ],
)
def test_a_malformed_url_is_one_line_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        PostgresStore(url)
    text = str(raised.value)
    assert text.startswith("store.url: ") and problem in text
    assert PASSWORD not in text and "\n" not in text


async def test_a_database_that_cannot_be_used_is_one_line_without_the_password(
    postgres: PostgresCluster,
) -> None:
    port = postgres.port
    cases = {
        f"postgresql://hermes:{PASSWORD}@127.0.0.1:{free_port()}/x": "Connection refused",
        f"postgresql://hermes:wrong-password-123@127.0.0.1:{port}/postgres": "password",
        f"postgresql://hermes:{PASSWORD}@127.0.0.1:{port}/no_such_db": "does not exist",
    }
    for url, problem in cases.items():
        with pytest.raises(ConfigError) as raised:
            await PostgresStore(url).open()
        text = str(raised.value)
        assert text.startswith("store.url: cannot connect to postgresql://***@127.0.0.1:")
        assert problem in text, text
        assert PASSWORD not in text and "wrong-password-123" not in text and "\n" not in text


@pytest.mark.slow
def test_the_cluster_fixture_leaves_no_server_running() -> None:
    cluster = PostgresCluster()
    with cluster:
        pid = cluster.server_pid()
        assert pid is not None and cluster.psql("SELECT 1") == "1"
    assert not cluster.root.exists()
    assert not running(pid), f"postgres pid {pid} still runs"
