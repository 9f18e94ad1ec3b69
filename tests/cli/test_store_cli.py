"""``hermes-core store migrate|copy`` and the other commands (``sessions``, ``doctor``,
``config check|show``, ``run``) against a real PostgreSQL store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_store import write_session
from typer.testing import CliRunner

from hermes_core.cli import app
from hermes_core.pg_schema import SCHEMA_VERSION
from hermes_core.testing import FakeOpenAI, cli_env
from hermes_core.testing.postgres import PASSWORD, PostgresCluster, free_port


def settings_file(tmp_path: Path, base_url: str, store: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(
        f"""
[agent]
model = "local:ok-primary"

[providers.local]
base_url = "{base_url}"

[store]
{store}
"""
    )
    return path


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_migrate_creates_the_schema_once(tmp_path: Path, postgres_url: str) -> None:
    settings = settings_file(tmp_path, "http://127.0.0.1:9/v1", f'url = "{postgres_url}"')
    for _ in range(2):
        code, out, err = cli("store", "migrate", "--settings", str(settings))
        assert (code, err) == (0, "")
        assert out.strip().endswith(f"schema version {SCHEMA_VERSION} (current)")
        assert PASSWORD not in out


def test_copy_moves_a_sqlite_store_and_sessions_commands_read_it_there(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_file = tmp_path / "sessions.db"
    asyncio.run(write_session(sqlite_file, "http:alice", "hello", "hi there"))
    asyncio.run(write_session(tmp_path / "other.db", "console:local", "q", "a"))
    settings = settings_file(tmp_path, "http://127.0.0.1:9/v1", f'url = "{postgres_url}"')

    code, out, err = cli("store", "copy", "--from", str(sqlite_file), "--to", postgres_url)
    assert (code, err) == (0, "")
    assert out.startswith("copied 1 session(s), 2 message(s)") and PASSWORD not in out

    code, out, _ = cli("sessions", "list", "--settings", str(settings))
    assert code == 0 and "http:alice" in out and "console:local" not in out
    code, out, _ = cli("sessions", "show", "http:alice", "--settings", str(settings))
    assert code == 0 and "hello" in out and "hi there" in out

    # A second copy would merge two stores: refused, one line, the target unchanged.
    other = tmp_path / "other.db"
    code, out, err = cli("store", "copy", "--from", str(other), "--to", postgres_url)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "already holds 1 session(s)" in err and PASSWORD not in err
    code, out, _ = cli("sessions", "list", "--settings", str(settings))
    assert "console:local" not in out


def test_sessions_list_on_a_database_without_a_store_lists_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = settings_file(tmp_path, "http://127.0.0.1:9/v1", f'url = "{postgres_url}"')
    code, out, err = cli("sessions", "list", "--settings", str(settings))
    assert (code, out.strip(), err) == (0, "No sessions stored.", "")


def test_config_show_and_doctor_never_print_the_password(
    tmp_path: Path, fake_openai: FakeOpenAI, postgres_url: str
) -> None:
    settings = settings_file(tmp_path, fake_openai.url, f'url = "{postgres_url}"')
    code, out, _ = cli("config", "show", "--settings", str(settings))
    assert code == 0 and PASSWORD not in out and "postgresql://***@127.0.0.1" in out
    cli("store", "migrate", "--settings", str(settings))
    code, out, _ = cli("doctor", "--json", "--settings", str(settings))
    assert PASSWORD not in out
    assert f"schema version {SCHEMA_VERSION} (current)" in out and "reachable" in out


@pytest.mark.parametrize(
    ("store", "says"),
    [
        (f'url = "mysql://u:{PASSWORD}@127.0.0.1/db"', "is not a PostgreSQL URL"),
        ('url = "postgresql://hermes@127.0.0.1/db"\npassword_env = "NO_SUCH_VAR_X"', "not set"),
        (f'url = "postgresql://hermes:{PASSWORD}@127.0.0.1:{{port}}/db"', "Connection refused"),
    ],
)
def test_run_with_an_unusable_store_exits_2_with_one_line_without_the_password(
    tmp_path: Path, fake_openai: FakeOpenAI, store: str, says: str
) -> None:
    settings = settings_file(tmp_path, fake_openai.url, store.replace("{port}", str(free_port())))
    done = subprocess.run(
        [sys.executable, "-m", "hermes_core", "run", "--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=cli_env(HERMES_LOAD_PLUGINS=""),
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and says in lines[0] and lines[0].startswith("hermes-core: error: ")
    assert PASSWORD not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_doctor_names_a_wrong_password_without_printing_it(
    tmp_path: Path, fake_openai: FakeOpenAI, postgres: PostgresCluster
) -> None:
    url = f"postgresql://hermes:wrong-secret-42@127.0.0.1:{postgres.port}/postgres"
    settings = settings_file(tmp_path, fake_openai.url, f'url = "{url}"')
    code, out, _ = cli("doctor", "--settings", str(settings))
    assert code == 1 and "password authentication failed" in out
    assert "wrong-secret-42" not in out
