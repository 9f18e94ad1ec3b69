"""Which store the settings ask for: ``store.path`` to a :class:`~hermes_core.store.Store`."""

from __future__ import annotations

from pathlib import Path

from hermes_core.settings import Config
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.store import MEMORY_PATH, MemoryStore, Store, default_store_path


def store_from_config(config: Config) -> Store:
    """The store ``store.path`` asks for: ``":memory:"``, a SQLite file, or (empty) the default
    file. Nothing is opened or created until :meth:`Store.open`."""
    path = str(config.get("store.path") or "")
    if path == MEMORY_PATH:
        return MemoryStore()
    return SQLiteStore(
        Path(path).expanduser().resolve() if path else default_store_path(),
        retention_days=float(config.get("store.retention_days") or 0),
    )


def state_dir(config: Config) -> Path:
    """Where a gateway keeps its other state files: beside the store file, or in the user
    data directory when the store is not a file."""
    path = str(config.get("store.path") or "")
    if path and path != MEMORY_PATH:
        return Path(path).expanduser().resolve().parent
    return default_store_path().parent
