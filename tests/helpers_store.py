"""Real damaged and read-only store files for tests: a page overwritten with garbage, a tmpfs
remounted read-only, a file system that fills up."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermes_core.sqlite_store import SQLiteStore
from hermes_core.store import FinishedRun
from hermes_core.types import Session


async def write_session(
    path: Path, key: str = "console:local", text: str = "hello", answer: str = "hi"
) -> None:
    """Store one answered run (``text``, then ``answer``) of session ``key`` in the store
    ``path`` (created), and close it."""
    store = SQLiteStore(path)
    await store.open()
    try:
        session = Session(key=key, platform=key.partition(":")[0], user_id="local")
        question = {"role": "user", "content": text}
        await store.begin_run(session, "r1", question)
        await store.finish_run(
            session, FinishedRun("r1", [{"role": "assistant", "content": answer}], "local:ok")
        )
    finally:
        await store.close()


def corrupt_table(path: Path, table: str) -> None:
    """Overwrite the root page of ``table`` in the (closed, checkpointed) database ``path``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        [root] = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
    with path.open("r+b") as file:
        file.seek(page_size * (root - 1))
        file.write(bytes(range(256)) * (page_size // 256))


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``mount_point`` (created), unmounted after; the test is
    skipped where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # Lazy: a test that failed with a file still open must not leave the mount behind.
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def remount_read_only(mount_point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
