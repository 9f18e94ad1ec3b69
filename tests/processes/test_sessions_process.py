"""Sessions across real ``hermes-core`` processes: restart, ``kill -9``, one gateway per store,
bad store files, terminal-safe output, CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers_store import corrupt_table, remount_read_only, tmpfs, write_session

from hermes_core.sqlite_store import APPLICATION_ID, SCHEMA_VERSION
from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    hermes_run_process,
    settings_for,
    write_settings,
)

HERMES = str(Path(sys.executable).with_name("hermes-core"))
SESSION = "console:local"


#: The http platform on a free port, so the gateway serves without a console on stdin.
HTTP_ON_A_FREE_PORT = {"http": {"enabled": True, "port": 0}}
#: What a terminal obeys: every C0 control but newline and tab, DEL, every C1 control.
CONTROLS = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))} - {"\n", "\t"}


def settings_file(tmp_path: Path, url: str, store: Path, **sections: Any) -> Path:
    """``tmp_path/settings.toml``: the scripted provider at ``url`` (60 s timeout), the SQLite
    store ``store``, and ``sections``."""
    settings = settings_for(url, store={"path": str(store)}, **sections)
    settings["providers"]["local"]["timeout_s"] = 60
    return write_settings(tmp_path / "settings.toml", settings)


def environment() -> dict[str, str]:
    # Only the built-in plugins, and no HERMES_ variable from the caller's shell.
    return cli_env(HERMES_LOAD_PLUGINS="")


def hermes(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``hermes-core ARGS`` to completion."""
    return subprocess.run(
        [HERMES, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
    )


def start(settings: Path) -> subprocess.Popen[str]:
    """``hermes-core run`` with the console reading our pipe."""
    return subprocess.Popen(
        [HERMES, "run", "--settings", str(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def wait_until(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def export(settings: Path) -> list[dict[str, object]]:
    done = hermes("sessions", "export", SESSION, "--format", "jsonl", "--settings", str(settings))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_console_conversation_survives_a_restart(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    settings = settings_file(tmp_path, fake_openai.url, tmp_path / "sessions.db")

    first = hermes("run", "--settings", str(settings), stdin="hello\nsecond\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "[ok-primary] hello (user messages: 1)",
        "[ok-primary] second (user messages: 2)",
    ]

    second = hermes("run", "--settings", str(settings), stdin="third\n")
    assert second.returncode == 0, second.stderr
    # A new process, a new agent: the model still receives the whole conversation.
    assert second.stdout.splitlines() == ["[ok-primary] third (user messages: 3)"]
    assert [m["content"] for m in fake_openai.requests[-1].messages] == [
        "hello",
        "[ok-primary] hello (user messages: 1)",
        "second",
        "[ok-primary] second (user messages: 2)",
        "third",
    ]

    shown = hermes("sessions", "show", SESSION, "--settings", str(settings))
    assert shown.returncode == 0, shown.stderr
    turns = [line.split("  ", 1)[1] for line in shown.stdout.splitlines() if "  " in line]
    assert turns == [
        "user: hello",
        "assistant [local:ok-primary]: [ok-primary] hello (user messages: 1)",
        "user: second",
        "assistant [local:ok-primary]: [ok-primary] second (user messages: 2)",
        "user: third",
        "assistant [local:ok-primary]: [ok-primary] third (user messages: 3)",
    ]


def test_kill_9_mid_run_keeps_the_question_unanswered_and_every_answer(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    database = tmp_path / "sessions.db"
    settings = settings_file(tmp_path, fake_openai.url, database)
    proc = start(settings)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        # slow-30: the run is certainly still in flight when the kill lands.
        proc.stdin.write("one\ntwo\n/model local:slow-30-x\nthree\n")
        proc.stdin.flush()
        wait_until(lambda: fake_openai.requests_for("slow-30-x") or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr.read()
        proc.kill()  # SIGKILL: no cleanup, no checkpoint, no close
        assert proc.wait(timeout=30) == -9
        acknowledged = proc.stdout.read().splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert acknowledged == [
        "[ok-primary] one (user messages: 1)",
        "[ok-primary] two (user messages: 2)",
        "Model set to local:slow-30-x for this session.",
    ]

    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    stored = export(settings)
    assert [(m["role"], m["content"], m["status"]) for m in stored] == [
        ("user", "one", "answered"),
        ("assistant", acknowledged[0], "answered"),
        ("user", "two", "answered"),
        ("assistant", acknowledged[1], "answered"),
        ("user", "three", "pending"),
    ]
    shown = hermes("sessions", "show", SESSION, "--settings", str(settings))
    assert "user: three  [UNANSWERED: the run did not finish]" in shown.stdout

    # The gateway starts again: /model persisted, the unanswered question stays out of history.
    fake_openai.clear()
    after = hermes("run", "--settings", str(settings), stdin="/model local:ok-primary\nfour\n")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines()[-1] == "[ok-primary] four (user messages: 3)"
    assert [m["content"] for m in fake_openai.requests[-1].messages] == [
        "one",
        acknowledged[0],
        "two",
        acknowledged[1],
        "four",
    ]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def not_a_database(path: Path) -> None:
    path.write_bytes(b"these are someone's notes, not a database\n" * 100)


def future_store(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE sessions (key TEXT PRIMARY KEY)")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (not_a_database, "is not a SQLite database"),
        (future_store, f"was written by a newer hermes-core (schema version {SCHEMA_VERSION + 1};"),
    ],
    ids=["not-a-database", "future-schema"],
)
@pytest.mark.parametrize("command", [["run"], ["sessions", "list"]], ids=["run", "sessions"])
def test_unusable_store_file_exits_2_and_stays_untouched(
    tmp_path: Path,
    fake_openai: FakeOpenAI,
    make: Callable[[Path], None],
    problem: str,
    command: list[str],
) -> None:
    database = tmp_path / "sessions.db"
    make(database)
    before = digest(database)
    settings = settings_file(tmp_path, fake_openai.url, database)

    done = hermes(*command, "--settings", str(settings), stdin="hello\n")

    assert done.returncode == 2
    [line] = done.stderr.splitlines()  # one line, no traceback
    assert line.startswith(f"hermes-core: error: store.path: {database} {problem}")
    assert done.stdout == ""
    assert digest(database) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions.db", "settings.toml"]
    assert fake_openai.requests == []


async def holds_the_lock(lock: Path, process: asyncio.subprocess.Process) -> None:
    """Wait until ``process`` (a ``hermes-core run``) has written its pid into ``lock``."""
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text() == f"{process.pid}\n"):
        assert process.returncode is None, f"hermes-core run exited {process.returncode}"
        assert time.monotonic() < deadline, "the gateway never took the store lock"
        await asyncio.sleep(0.05)


async def test_one_gateway_per_store_readers_beside_it_and_kill_9_frees_it(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    database = tmp_path / "sessions.db"
    lock = tmp_path / "sessions.db.lock"
    await write_session(database)
    settings = settings_file(tmp_path, fake_openai.url, database, platforms=HTTP_ON_A_FREE_PORT)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(hermes, *args, "--settings", str(settings))

    async with hermes_run_process(settings, environment()) as first:
        await holds_the_lock(lock, first)

        # All at once, beside the gateway: a second gateway and three readers.
        second, listed, shown, doctor = await asyncio.gather(
            cli("run"),
            cli("sessions", "list"),
            cli("sessions", "show", SESSION),
            cli("doctor", "--json"),
        )
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"hermes-core: error: store.path: {database} is in use by another process "
            f"(pid {first.pid}); one store serves one gateway: stop that one, or point "
            "store.path at another file"
        ]
        # Reading commands take no lock: they work while the gateway runs.
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[1].split()[:3] == [SESSION, "console", "2"]
        assert shown.returncode == 0, shown.stderr
        assert [line.split("  ", 1)[1] for line in shown.stdout.splitlines()[-2:]] == [
            "user: hello",
            "assistant [local:ok]: hi",
        ]
        [store_check] = [row for row in json.loads(doctor.stdout) if row["check"] == "store"]
        assert store_check["ok"] is True, store_check
        assert first.returncode is None  # none of that disturbed the gateway

        os.killpg(first.pid, signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    assert lock.read_text() == f"{first.pid}\n"  # the file outlives kill -9; the lock does not

    async with hermes_run_process(settings, environment()) as successor:
        await holds_the_lock(lock, successor)
        successor.send_signal(signal.SIGTERM)
        assert await successor.wait() == 0
    assert not lock.exists()  # a clean stop removes it


def test_damaged_store_stops_run_list_and_show_with_one_line(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    database = tmp_path / "sessions.db"
    asyncio.run(write_session(database))
    corrupt_table(database, "messages")
    before = digest(database)
    settings = settings_file(tmp_path, fake_openai.url, database)
    damaged = f"hermes-core: error: store.path: {database} is damaged ("

    for command in (["run"], ["sessions", "list"], ["sessions", "show", SESSION]):
        done = hermes(*command, "--settings", str(settings), stdin="hello\n")
        assert (done.returncode, done.stdout) == (2, ""), command
        [line] = done.stderr.splitlines()  # one line, no traceback
        assert line.startswith(damaged), line
    assert digest(database) == before  # (readers may leave SQLite's empty -shm/-wal beside it)
    assert fake_openai.requests == []


def test_store_on_a_read_only_file_system_is_read_only_and_still_readable(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    with tmpfs(tmp_path / "mnt") as mount:
        database = mount / "sessions.db"
        asyncio.run(write_session(database))
        remount_read_only(mount)
        settings = settings_file(tmp_path, fake_openai.url, database)
        read_only = (
            f"hermes-core: error: store.path: {database} is read-only (read-only file system); "
        )

        for writer in (["run"], ["sessions", "prune", "--older-than", "0s"]):
            done = hermes(*writer, "--settings", str(settings), stdin="hello\n")
            assert done.returncode == 2, writer
            [line] = done.stderr.splitlines()
            assert line.startswith(read_only), line
            assert "not a SQLite database" not in line

        listed = hermes("sessions", "list", "--settings", str(settings))
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[1].split()[:3] == [SESSION, "console", "2"]
        shown = hermes("sessions", "show", SESSION, "--settings", str(settings))
        assert shown.returncode == 0, shown.stderr
        assert "user: hello" in shown.stdout
        assert fake_openai.requests == []


def test_control_characters_are_printed_visible_never_raw(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    database = tmp_path / "sessions.db"
    settings = settings_file(tmp_path, fake_openai.url, database)
    # Set the window title, clear the screen, the same through C1 CSI, bell, backspace, DEL.
    hostile = "\x1b]0;owned\x07\x1b[2J\x9b31m\x08\x7fdone\ttab"
    shown_as = "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x08\\x7fdone\ttab"

    run = hermes("run", "--settings", str(settings), stdin=hostile + "\n")
    assert run.returncode == 0, run.stderr
    # The scripted model echoes the message back: the console prints it made visible.
    assert run.stdout == f"[ok-primary] {shown_as} (user messages: 1)\n"
    stored = export(settings)  # the transcript itself keeps the text as it was sent
    assert stored[0]["content"] == hostile

    shown = hermes("sessions", "show", SESSION, "--settings", str(settings))
    assert shown.returncode == 0, shown.stderr
    assert f"user: {shown_as}\n" in shown.stdout
    assert not CONTROLS & set(shown.stdout)

    asyncio.run(write_session(database, key="http:\x1b[31mred\x9b"))
    listed = hermes("sessions", "list", "--settings", str(settings))
    assert listed.returncode == 0, listed.stderr
    assert "http:\\x1b[31mred\\x9b" in listed.stdout
    assert not CONTROLS & set(listed.stdout)
