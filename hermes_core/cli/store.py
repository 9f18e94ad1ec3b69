"""``hermes-core store``: migrate a PostgreSQL store, and copy a SQLite store into one.

Also the one place the CLI's reading commands (``sessions``) get their store from: the
PostgreSQL one ``store.url`` names, else the SQLite file of ``store.path``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from hermes_core.cli.options import EXIT_CONFIG, SettingsOption
from hermes_core.errors import ConfigError, HermesError
from hermes_core.pg_schema import shown
from hermes_core.pg_store import PostgresStore
from hermes_core.sqlite_schema import check_store_file
from hermes_core.sqlite_store import Access, SQLiteStore
from hermes_core.store import MEMORY_PATH, default_store_path
from hermes_core.store_config import password_from_env

store_app = typer.Typer(
    help="Migrate a PostgreSQL store, or copy a SQLite store into one.", no_args_is_help=True
)


def store_settings(settings: Path | None) -> dict[str, Any]:
    """The ``[store]`` table of the settings (only it: the commands work on a store alone)."""
    from hermes_core.settings import load_raw

    raw, _ = load_raw(settings)
    table = raw.get("store", {})
    return table if isinstance(table, dict) else {}


def postgres_store(table: dict[str, Any], *, migrate: bool) -> PostgresStore | None:
    """The PostgreSQL store ``store.url`` names (None when it is not set)."""
    url = str(table.get("url") or "")
    if not url:
        return None
    password = password_from_env(str(table.get("password_env") or ""))
    return PostgresStore(url, password=password, pool_size=2, migrate=migrate)


def sqlite_path(table: dict[str, Any]) -> Path:
    """The SQLite file ``store.path`` names, resolved."""
    value = str(table.get("path") or "")
    if value == MEMORY_PATH:
        raise ConfigError("store.path", f"{MEMORY_PATH!r} keeps no sessions to look at")
    return Path(value).expanduser().resolve() if value else default_store_path()


def _fail(error: HermesError) -> typer.Exit:
    typer.echo(f"hermes-core: error: {error}", err=True)
    return typer.Exit(EXIT_CONFIG)


@store_app.command("migrate")
def migrate(settings: SettingsOption = None) -> None:
    """Create or upgrade the PostgreSQL store of store.url (run also does it at start-up)."""
    try:
        store = postgres_store(store_settings(settings), migrate=True)
        if store is None:
            raise ConfigError("store.url", "not set: the SQLite store migrates itself at start-up")

        async def run() -> int:
            await store.open()
            try:
                return await store.schema_version()
            finally:
                await store.close()

        version = asyncio.run(run())
    except HermesError as error:
        raise _fail(error) from None
    typer.echo(f"{shown(store.url)}: schema version {version} (current)")


@store_app.command("copy")
def copy(
    to: Annotated[
        str, typer.Option("--to", help="postgresql://user[:password]@host:port/db, empty.")
    ],
    source: Annotated[
        Path | None, typer.Option("--from", help="SQLite store file (default: store.path).")
    ] = None,
    password_env: Annotated[
        str, typer.Option("--password-env", help="Env var with the target's password.")
    ] = "",
    settings: SettingsOption = None,
) -> None:
    """Copy every session and transcript of a SQLite store into an empty PostgreSQL store
    (created or migrated first). A target that holds sessions is refused; a failed copy
    stores nothing, so it can simply be run again."""
    try:
        path = source.expanduser().resolve() if source else sqlite_path(store_settings(settings))
        target = PostgresStore(to, password=password_from_env(password_env), pool_size=2)
        sessions, lines = asyncio.run(_copy(path, target))
    except HermesError as error:
        raise _fail(error) from None
    typer.echo(f"copied {sessions} session(s), {lines} message(s) from {path} to {shown(to)}")


async def _copy(path: Path, target: PostgresStore) -> tuple[int, int]:
    if not path.is_file() or check_store_file(path) == 0:
        raise ConfigError("--from", f"{path} holds no store to copy")
    source = SQLiteStore(path, access=Access.READ)
    await source.open()
    try:
        await target.open()
        try:
            count = 0
            async with target.importing() as put:
                summaries = await source.sessions()
                for summary in summaries:
                    session = await source.load_session(summary.key)
                    if session is not None:
                        transcript = await source.transcript(summary.key)
                        await put(session, transcript)
                        count += len(transcript)
            return len(summaries), count
        finally:
            await target.close()
    finally:
        await source.close()
