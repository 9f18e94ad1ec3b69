"""Which store the settings ask for: ``store.url`` or ``store.path`` to a
:class:`~hermes_core.store.Store`."""

from __future__ import annotations

import os
from pathlib import Path

from hermes_core.errors import ConfigError
from hermes_core.pg_store import PostgresStore
from hermes_core.settings import Config
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.store import MEMORY_PATH, MemoryStore, Store, default_store_path


def store_from_config(config: Config, *, migrate: bool = True) -> Store:
    """The store the settings ask for: PostgreSQL at ``store.url`` when set; else
    ``store.path``: ``":memory:"``, a SQLite file, or (empty) the default file. Nothing is
    opened or created until :meth:`Store.open`; ``migrate=False`` (a PostgreSQL store only)
    refuses an outdated schema there instead of upgrading it.

    Raises:
        ConfigError: ``store.url`` is not a PostgreSQL URL, or ``store.password_env`` names an
            unset variable.
    """
    url = str(config.get("store.url") or "")
    if url:
        return PostgresStore(
            url,
            password=store_password(config),
            pool_size=int(config.get("store.pool_size")),
            retention_days=float(config.get("store.retention_days") or 0),
            migrate=migrate,
        )
    path = str(config.get("store.path") or "")
    if path == MEMORY_PATH:
        return MemoryStore()
    return SQLiteStore(
        Path(path).expanduser().resolve() if path else default_store_path(),
        retention_days=float(config.get("store.retention_days") or 0),
    )


def store_password(config: Config) -> str | None:
    """The PostgreSQL password from the variable ``store.password_env`` names (None: unset)."""
    return password_from_env(str(config.get("store.password_env") or ""))


def password_from_env(name: str) -> str | None:
    """The value of the environment variable ``name`` (``store.password_env``); None when
    ``name`` is empty.

    Raises:
        ConfigError: the variable is unset or empty.
    """
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(
            "store.password_env", f"the environment variable {name} is not set (or empty)"
        )
    return value


def state_dir(config: Config) -> Path:
    """Where a gateway keeps its other state files: beside the store file, or in the user
    data directory when the store is not a file."""
    path = str(config.get("store.path") or "")
    if path and path != MEMORY_PATH and not config.get("store.url"):
        return Path(path).expanduser().resolve().parent
    return default_store_path().parent
