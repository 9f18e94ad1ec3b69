"""``hermes-core sessions list|show|export|prune`` on a store written by the real SQLiteStore."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hermes_core.cli import app
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.store import FinishedRun
from hermes_core.terminal import visible
from hermes_core.types import Session

DAY = 86_400.0
CALL = {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": '{"tz":"UTC"}'}}


def fill(path: Path) -> None:
    """Three sessions: a console chat with a tool call, a failed and an unfinished run; an old
    HTTP session; a session that only ran a command."""

    async def write() -> None:
        store = SQLiteStore(path)
        await store.open()
        console = Session(key="console:local", platform="console", user_id="local")
        await store.begin_run(console, "r1", {"role": "user", "content": "time?"})
        await store.finish_run(
            console,
            FinishedRun(
                "r1",
                [
                    {"role": "assistant", "content": None, "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
                    {"role": "assistant", "content": "It is noon."},
                ],
                "local:ok-primary",
            ),
        )
        await store.begin_run(console, "r2", {"role": "user", "content": "and now?"})
        await store.finish_run(console, FinishedRun("r2", None, "local:bad-x"))
        console.conversation = 1
        await store.begin_run(console, "r3", {"role": "user", "content": "still there?"})
        await store.save_session(console)

        old = Session(key="http:alice", platform="http", last_active=time.time() - 40 * DAY)
        await store.begin_run(old, "r4", {"role": "user", "content": "hello"})
        await store.finish_run(old, FinishedRun("r4", [{"role": "assistant", "content": "hi"}]))
        await store.save_session(old)
        await store.save_session(Session(key="http:bob", platform="http", model="local:ok-b"))
        await store.close()

    asyncio.run(write())


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    fill(tmp_path / "sessions.db")
    path = tmp_path / "settings.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n')
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_prints_sessions_most_recent_first(settings: Path) -> None:
    code, out, _ = invoke("sessions", "list", "--settings", str(settings))
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "KEY",
        "PLATFORM",
        "MESSAGES",
        "UNANSWERED",
        "LAST",
        "ACTIVE",
        "OWNER",
        "MODEL",
    ]
    assert [row.split()[:4] for row in rows] == [
        ["http:bob", "http", "0", "0"],
        ["console:local", "console", "6", "2"],
        ["http:alice", "http", "2", "0"],
    ]
    assert rows[0].split()[-1] == "local:ok-b"


def test_list_json_filtered_by_platform(settings: Path) -> None:
    code, out, _ = invoke(
        "sessions", "list", "--platform", "http", "--json", "--settings", str(settings)
    )
    assert code == 0
    rows = json.loads(out)
    assert [(r["key"], r["messages"], r["model"]) for r in rows] == [
        ("http:bob", 0, "local:ok-b"),
        ("http:alice", 2, None),
    ]
    assert rows[0]["last_active"].endswith("+00:00")


def test_show_prints_the_transcript_and_marks_unanswered_runs(settings: Path) -> None:
    code, out, _ = invoke("sessions", "show", "console:local", "--settings", str(settings))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Session console:local (platform console, user local)"
    assert lines[2] == "Current conversation: 1"
    body = [line.split("  ", 1)[1] if "  " in line else line for line in lines[3:]]
    assert body == [
        "",
        "--- conversation 0 ---",
        "user: time?",
        'assistant [local:ok-primary]: -> calls clock({"tz":"UTC"})',
        "tool [c1]: 12:00",
        "assistant [local:ok-primary]: It is noon.",
        "user: and now?  [FAILED: the run ended without an answer (an error, or client tool "
        "results that never came)]",
        "",
        "--- conversation 1 ---",
        "user: still there?  [UNANSWERED: the run did not finish]",
    ]


def test_export_jsonl_is_the_messages_with_their_metadata(settings: Path) -> None:
    code, out, _ = invoke("sessions", "export", "console:local", "--settings", str(settings))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(m["role"], m["status"], m["conversation"]) for m in lines] == [
        ("user", "answered", 0),
        ("assistant", "answered", 0),
        ("tool", "answered", 0),
        ("assistant", "answered", 0),
        ("user", "failed", 0),
        ("user", "pending", 1),
    ]
    assert lines[1]["tool_calls"] == [CALL]
    assert lines[2]["tool_call_id"] == "c1"
    assert lines[3]["model"] == "local:ok-primary"
    assert lines[0]["run_id"] == "r1" and lines[0]["session_key"] == "console:local"


def test_export_markdown(settings: Path) -> None:
    code, out, _ = invoke(
        "sessions", "export", "console:local", "--format", "md", "--settings", str(settings)
    )
    assert code == 0
    assert out.startswith("# Session `console:local`\n")
    assert "## Conversation 0" in out and "## Conversation 1" in out
    assert "It is noon." in out
    assert '- calls `clock({"tz":"UTC"})`' in out
    assert (
        "> **FAILED: the run ended without an answer (an error, or client tool results that "
        "never came)**" in out
    )
    assert "> **UNANSWERED: the run did not finish**" in out


def test_prune_deletes_idle_sessions(settings: Path) -> None:
    code, out, _ = invoke("sessions", "prune", "--older-than", "30d", "--settings", str(settings))
    assert code == 0
    assert out.startswith("Pruned 1 session(s) last active before ")
    _, listed, _ = invoke("sessions", "list", "--json", "--settings", str(settings))
    assert [row["key"] for row in json.loads(listed)] == ["http:bob", "console:local"]


def test_unknown_session_exits_1(settings: Path) -> None:
    code, out, err = invoke("sessions", "show", "nobody", "--settings", str(settings))
    assert (code, out) == (1, "")
    assert err == "hermes-core: error: no session 'nobody' is stored\n"


def test_bad_duration_is_a_usage_error(settings: Path) -> None:
    code, _, err = invoke("sessions", "prune", "--older-than", "soon", "--settings", str(settings))
    assert code == 2
    assert "expected a number and a unit (s, m, h, d, w)" in err


def test_missing_store_lists_nothing_and_creates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "absent" / "sessions.db"
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\npath = "{database}"\n')
    assert invoke("sessions", "list", "--settings", str(settings))[:2] == (
        0,
        "No sessions stored.\n",
    )
    assert invoke("sessions", "list", "--json", "--settings", str(settings))[:2] == (0, "[]\n")
    assert invoke("sessions", "show", "console:local", "--settings", str(settings))[0] == 1
    assert not database.parent.exists()


def test_memory_store_has_nothing_to_show(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[store]\npath = ":memory:"\n')
    code, _, err = invoke("sessions", "list", "--settings", str(settings))
    assert code == 2
    assert err == "hermes-core: error: store.path: ':memory:' keeps no sessions to look at\n"


def test_visible_writes_out_every_control_but_newline_and_tab() -> None:
    controls = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in "\n\t"]
    assert len(controls) == 30 + 33  # C0 but two, DEL, C1
    for char in controls:
        assert visible(f"a{char}b") == f"a\\x{ord(char):02x}b"
    kept = "line one\n\tline two: caf\u00e9, \u00a0, \u2603, \U0001f600"
    assert visible(kept) == kept


def test_export_markdown_shows_control_characters(tmp_path: Path) -> None:
    async def write() -> None:
        store = SQLiteStore(tmp_path / "sessions.db")
        await store.open()
        session = Session(key="console:local", platform="console")
        await store.begin_run(session, "r1", {"role": "user", "content": "\x1b[2Jgone"})
        await store.close()

    asyncio.run(write())
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\npath = "{tmp_path / "sessions.db"}"\n')
    code, out, _ = invoke(
        "sessions", "export", "console:local", "--format", "md", "--settings", str(settings)
    )
    assert code == 0
    assert "\\x1b[2Jgone" in out and "\x1b" not in out
