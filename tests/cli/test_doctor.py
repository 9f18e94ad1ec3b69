"""``hermes-core doctor``: every check against real parts (the scripted OpenAI server, real MCP
servers, real SQLite files, real sockets), in process through :mod:`hermes_core.doctor` and end
to end through ``hermes-core`` subprocesses (exit codes, the table, ``--json``)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers_dist import BROKEN_IMPORT, NO_PARAMS_PROVIDER
from mcp_servers.helpers import time_spec, toolbox_spec

from hermes_core.doctor import (
    CheckResult,
    Report,
    check_mcp_server,
    check_provider,
    check_store,
    run_checks,
)
from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.settings import PoolSettings
from hermes_core.settings import ProviderConfig, config_from_dict
from hermes_core.sqlite_store import SCHEMA_VERSION, SQLiteStore
from hermes_core.testing import FakeOpenAI, cli_env, hermes_core, write_dist, write_settings
from hermes_core.types import Session

MARKER = f"test-doctor-{uuid.uuid4().hex}"
KEY_ENV = "HERMES_DOCTOR_TEST_KEY"
#: Wide enough that no table cell wraps, so each check is one line of output.
WIDE = {"COLUMNS": "300"}


pytestmark = pytest.mark.usefixtures("no_hermes_env", "no_leaked_servers")


# --- helpers ---------------------------------------------------------------------------------


def good_settings(fake: FakeOpenAI, tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A provider with a key, models the fake server lists, and an existing store file."""
    settings: dict[str, Any] = {
        "agent": {"model": "local:ok-model", "fallbacks": ["local:tool-model"]},
        "providers": {"local": {"base_url": fake.url, "api_key_env": KEY_ENV, "max_retries": 0}},
        "store": {"path": str(tmp_path / "sessions.db")},
    }
    settings.update(sections)
    return settings


async def make_store(path: Path, sessions: int = 3) -> None:
    """A real store file with a few sessions, written and closed by :class:`SQLiteStore`."""
    store = SQLiteStore(path)
    await store.open()
    try:
        for index in range(sessions):
            session = Session(key=f"test:{index}", platform="test")
            await store.save_session(session)
            await store.begin_run(session, f"run-{index}", {"role": "user", "content": "x" * 300})
    finally:
        await store.close()


def by_check(rows: Report | list[CheckResult] | list[dict[str, Any]]) -> dict[str, Any]:
    """Results (or JSON rows) by check name."""
    items: list[Any] = rows.results if isinstance(rows, Report) else list(rows)
    return {item["check"] if isinstance(item, dict) else item.check: item for item in items}


def doctor_cli(settings: Path, tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    done = hermes_core(
        "doctor",
        "--settings",
        str(settings),
        *args,
        env=cli_env(**{"HERMES_LOAD_PLUGINS": "", **WIDE, **env}),
        cwd=tmp_path,
    )
    return done.returncode, done.stdout, done.stderr


def table_rows(stdout: str) -> list[str]:
    """The table's check lines (they start with a status symbol), without the summary."""
    lines = [line.rstrip() for line in stdout.splitlines()]
    return [line for line in lines[:-1] if line[:1] in ("✓", "✗", "-") and "  " in line]


# --- end to end ------------------------------------------------------------------------------


async def test_all_good_settings_exit_0_and_every_line_passes(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    store = tmp_path / "sessions.db"
    await make_store(store)
    before = store.read_bytes()
    settings = good_settings(
        fake_openai,
        tmp_path,
        mcp={"servers": {"toolbox": toolbox_spec(MARKER), "time": time_spec(MARKER)}},
        platforms={"http": {"enabled": True, "host": "127.0.0.1", "port": 0}},
    )
    code, out, err = doctor_cli(
        write_settings(tmp_path / "settings.toml", settings), tmp_path, **{KEY_ENV: "sk-test"}
    )
    assert code == 0, out + err
    rows = table_rows(out)
    checks = [row.split()[1:3] for row in rows]
    for expected in (
        ["settings"],
        ["plugin", "eviction"],
        ["provider", "local"],
        ["mcp", "toolbox"],
        ["mcp", "time"],
        ["platform", "http"],
        ["store"],
    ):
        assert any(check[: len(expected)] == expected for check in checks), (expected, out)
    assert all(row.startswith("✓") for row in rows), out
    assert "✗" not in out and "fix:" not in out
    assert f"set, from ${KEY_ENV}" in out
    assert "listed: ok-model, tool-model" in out
    assert "toolbox" in out and "tool(s)" in out
    assert out.splitlines()[-1].startswith(f"✓ all {len(rows)} checks passed")
    assert store.read_bytes() == before  # read-only: not a byte changed


async def test_unreachable_provider_exits_1_with_the_fix_in_json(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    settings = good_settings(fake_openai, tmp_path)
    settings["providers"]["local"]["base_url"] = closed
    code, out, err = doctor_cli(
        write_settings(tmp_path / "settings.toml", settings),
        tmp_path,
        "--json",
        **{KEY_ENV: "sk-test"},
    )
    assert code == 1, out + err
    rows = json.loads(out)
    assert all(set(row) == {"check", "ok", "detail", "fix"} for row in rows)
    checks = by_check(rows)
    endpoint = checks["provider local endpoint"]
    assert endpoint["ok"] is False
    assert endpoint["detail"].startswith(f"cannot reach {closed}/models")
    assert "providers.local.base_url" in endpoint["fix"]
    assert checks["provider local models"]["ok"] is None  # nothing to compare against
    assert [row["check"] for row in rows if row["ok"] is False] == ["provider local endpoint"]


def test_missing_key_variable_is_a_settings_error_exit_2_in_one_line(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    settings = write_settings(tmp_path / "settings.toml", good_settings(fake_openai, tmp_path))
    code, out, err = doctor_cli(settings, tmp_path)  # KEY_ENV is not set
    assert code == 2, out + err
    message = f"providers.local.api_key_env: environment variable {KEY_ENV} is not set"
    rows = table_rows(out)
    assert rows[0].startswith("✗") and rows[0].split()[1] == "settings"
    assert rows[0].endswith(message)  # the whole message on the one line of the check
    assert out.count(message) == 1
    assert "fix: export that variable" in out
    skipped = [row.split()[1] for row in rows if row.startswith("-")]
    assert skipped == ["providers", "mcp", "platforms", "store"]
    assert "Traceback" not in out + err
    assert not (tmp_path / "sessions.db").exists()


def installed(tmp_path: Path, dist: str, source: str) -> tuple[str, dict[str, str]]:
    """Plugin distribution ``dist`` installed in ``tmp_path/site``: its entry-point name, and
    the environment of a doctor that loads it alone."""
    site = tmp_path / "site"
    name = write_dist(site, dist, source)
    return name, {KEY_ENV: "sk-test", "PYTHONPATH": str(site), "HERMES_LOAD_PLUGINS": name}


def test_broken_plugin_is_reported_with_how_to_disable_it(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    name, env = installed(tmp_path, "doctor-broken", BROKEN_IMPORT)
    settings = good_settings(fake_openai, tmp_path)
    path = write_settings(tmp_path / "settings.toml", settings)

    code, out, err = doctor_cli(path, tmp_path, "--json", **env)
    assert code == 1, out + err
    row = by_check(json.loads(out))[f"plugin {name}"]
    assert row["ok"] is False
    assert row["detail"] == "RuntimeError: broken on purpose at import"
    assert f'plugins.disabled = ["{name}"]' in row["fix"] and "HERMES_LOAD_PLUGINS=" in row["fix"]

    settings["plugins"] = {"disabled": [name]}  # the fix, applied
    code, out, err = doctor_cli(write_settings(path, settings), tmp_path, "--json", **env)
    assert code == 0, out + err
    row = by_check(json.loads(out))[f"plugin {name}"]
    assert row["ok"] is True and row["detail"].startswith("not loaded")


def test_a_provider_type_without_params_is_reported_and_the_rest_still_checked(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    name, env = installed(tmp_path, "no-params-provider", NO_PARAMS_PROVIDER)
    settings = good_settings(fake_openai, tmp_path)
    settings["agent"]["fallbacks"] = ["mine:any"]
    settings["providers"]["mine"] = {"type": "plain"}
    path = write_settings(tmp_path / "settings.toml", settings)

    code, out, err = doctor_cli(path, tmp_path, "--json", **env)

    assert code == 1, out + err
    rows = by_check(json.loads(out))
    row = rows["provider mine endpoint"]
    assert row["ok"] is False
    assert row["detail"].startswith(f"provider type 'plain' from plugin '{name}' cannot be used: ")
    assert "PlainProvider.complete() does not accept **params" in row["detail"]
    assert row["fix"] == "update the plugin, or set providers.mine.type to another type"
    assert rows["provider mine models"]["ok"] is None
    # One plugin's unusable provider hides nothing else.
    assert rows["settings"]["ok"] is True
    assert rows["provider local endpoint"]["ok"] is True
    assert "store" in rows
    assert "Traceback" not in out + err


# --- providers -------------------------------------------------------------------------------


def provider(base_url: str, **options: Any) -> ProviderConfig:
    config = config_from_dict(
        {"agent": {"model": "p:m"}, "providers": {"p": {"base_url": base_url, **options}}}
    )
    return config.providers["p"]


async def test_a_model_the_endpoint_does_not_list_fails(fake_openai: FakeOpenAI) -> None:
    models = [("agent.model", "ok-model"), ("agent.fallbacks[0]", "ok-modle")]
    results = by_check(await check_provider_results(provider(fake_openai.url), models))
    assert results["p endpoint"].ok is True
    listing = results["p models"]
    assert listing.ok is False
    assert listing.detail == "not listed by the endpoint: ok-modle (agent.fallbacks[0])"
    assert listing.fix is not None
    assert listing.fix.startswith("set agent.fallbacks[0] to a listed model (listed: ok-model,")


async def check_provider_results(
    config: ProviderConfig, models: list[tuple[str, str]]
) -> list[CheckResult]:
    """:func:`check_provider`, with check names shortened to ``p <what>``."""
    results = await check_provider(config, models, known_types={"openai"})
    return [
        CheckResult(r.check.replace("provider p ", "p "), r.ok, r.detail, r.fix) for r in results
    ]


async def test_endpoint_without_a_model_list_passes(fake_openai: FakeOpenAI) -> None:
    root = fake_openai.url.removesuffix("/v1")  # the fake server answers 404 on /models here
    results = by_check(await check_provider_results(provider(root), [("agent.model", "x")]))
    assert results["p endpoint"].ok is True
    assert results["p models"].ok is True
    assert results["p models"].detail == f"model list not supported (404 on {root}/models)"


class _KeyRefusingServer(ThreadingHTTPServer):
    """Answers every GET with 401, remembering the Authorization headers it was sent."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.authorizations.append(self.headers.get("Authorization"))
                body = b'{"error": {"message": "invalid api key"}}'
                self.send_response(401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


async def test_a_refused_key_fails_the_endpoint_check(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _KeyRefusingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(KEY_ENV, "sk-wrong")
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config = provider(url, api_key_env=KEY_ENV)
        results = by_check(await check_provider_results(config, [("agent.model", "m")]))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert server.authorizations == ["Bearer sk-wrong"]
    assert results["p key"].ok is True  # present; the endpoint is what refuses it
    assert results["p endpoint"].ok is False
    assert results["p endpoint"].detail == f"{url}/models refused the key (HTTP 401)"
    assert results["p endpoint"].fix == f"check the key in ${KEY_ENV}"
    assert results["p models"].ok is None


# --- MCP servers -----------------------------------------------------------------------------


async def test_mcp_server_with_a_missing_command_fails_with_the_reason() -> None:
    spec = MCPServerSpec.from_mapping("ghost", {"command": f"no-such-command-{MARKER}"}, "settings")
    result = await check_mcp_server(spec, PoolSettings())
    assert result.ok is False
    assert result.detail == f"command not found: 'no-such-command-{MARKER}'"
    assert result.fix is not None and "mcp.servers.ghost.command" in result.fix


async def test_invalid_mcp_server_spec_fails_its_row_and_the_others_still_run(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    servers = {
        "bad": {"transport": "ftp", "url": "ftp://x"},
        "off": {"command": "x", "enabled": False},
    }
    settings = good_settings(fake_openai, tmp_path, mcp={"servers": servers})
    report = await run_checks(write_settings(tmp_path / "s.toml", settings), entry_points=False)
    results = by_check(report)
    assert results["mcp bad"].ok is False
    assert (
        results["mcp bad"].detail == "mcp.servers.bad.transport: expected stdio or http, got 'ftp'"
    )
    assert results["mcp off"].ok is True and results["mcp off"].detail.startswith("disabled")
    assert results["provider local endpoint"].ok is True
    assert report.exit_code == 1


# --- platforms -------------------------------------------------------------------------------


async def test_platform_checks_bind_rule_taken_port_and_missing_adapter(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        platforms = {
            "http": {"enabled": True, "port": port},
            "pager": {"enabled": True},
            "irc": {"enabled": "yes"},
        }
        settings = good_settings(fake_openai, tmp_path, platforms=platforms)
        report = await run_checks(write_settings(tmp_path / "a.toml", settings), entry_points=False)
    results = by_check(report)
    assert results["platform http"].ok is False
    assert results["platform http"].detail.startswith(f"cannot listen on 127.0.0.1:{port}:")
    assert results["platform pager"].ok is False
    assert results["platform pager"].detail.startswith("no platform 'pager' is installed")
    assert results["platform irc"].ok is False
    assert (
        results["platform irc"].detail == "platforms.irc.enabled: expected true or false, got 'yes'"
    )
    assert "platform console" not in results  # another platform is enabled

    settings["platforms"] = {"http": {"enabled": True, "host": "0.0.0.0", "port": 0}}
    report = await run_checks(write_settings(tmp_path / "b.toml", settings), entry_points=False)
    http = by_check(report)["platform http"]
    assert http.ok is False
    assert http.detail.startswith("platforms.http.host: refusing to listen on 0.0.0.0 without API")

    settings["platforms"]["http"]["api_keys"] = ["k1"]
    report = await run_checks(write_settings(tmp_path / "c.toml", settings), entry_points=False)
    http = by_check(report)["platform http"]
    assert http.ok is True and http.detail == "can listen on 0.0.0.0:0 (1 API key(s))"
    assert report.exit_code == 0


# --- store -----------------------------------------------------------------------------------


def store_config(path: Path | str) -> Any:
    return config_from_dict(
        {
            "agent": {"model": "p:m"},
            "providers": {"p": {"base_url": "http://x"}},
            "store": {"path": str(path)},
        }
    )


def test_missing_store_passes_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "sessions.db"
    result = check_store(store_config(path))
    assert result.ok is True and result.detail == f"{path} will be created on first run"
    assert not path.parent.exists()


async def test_healthy_store_passes(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    await make_store(path)
    result = check_store(store_config(path))
    assert result.ok is True
    assert result.detail == f"{path}: schema version {SCHEMA_VERSION} (current), integrity ok"


def test_memory_store_passes(tmp_path: Path) -> None:
    assert check_store(store_config(":memory:")).ok is True


def test_a_file_that_is_not_a_store_fails_and_is_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    path.write_bytes(b"not a database at all\n" * 100)
    before = path.read_bytes()
    result = check_store(store_config(path))
    assert result.ok is False
    assert result.detail.startswith(f"{path} is not a SQLite database")
    assert path.read_bytes() == before


async def test_a_damaged_store_fails_the_integrity_check_and_is_left_unchanged(
    tmp_path: Path,
) -> None:
    # Pages overwritten in the middle of the file: SQLite cannot even finish the check.
    torn = tmp_path / "torn.db"
    await make_store(torn, sessions=40)
    data = bytearray(torn.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    for start in range(page, len(data), page):  # every b-tree page header but the schema's
        data[start : start + 16] = b"\xff" * 16
    torn.write_bytes(bytes(data))
    # An index that no longer matches its table: the check finishes and lists the rows.
    stale = tmp_path / "stale.db"
    await make_store(stale)
    with sqlite3.connect(stale) as db:
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = 'CREATE INDEX sessions_by_activity ON sessions "
            "(platform)' WHERE name = 'sessions_by_activity'"
        )
    db.close()

    for path, problem in (
        (torn, "database disk image is malformed"),
        (stale, "row 1 missing from index sessions_by_activity (+2 more)"),
    ):
        before = path.read_bytes()
        result = check_store(store_config(path))
        assert result.ok is False, path
        assert result.detail == f"{path}: integrity check failed: {problem}"
        assert result.fix is not None and "backup" in result.fix
        assert path.read_bytes() == before


def test_report_exit_codes() -> None:
    good, bad, skip = (
        CheckResult("a", True, ""),
        CheckResult("b", False, "", "fix"),
        CheckResult("c", None, ""),
    )
    assert Report([good, skip], settings_valid=True).exit_code == 0
    assert Report([good, bad], settings_valid=True).exit_code == 1
    assert Report([bad, skip], settings_valid=False).exit_code == 2


async def test_mcp_servers_are_probed_and_stopped_leaving_no_task(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    servers = {"time": time_spec(MARKER)}
    settings = good_settings(fake_openai, tmp_path, mcp={"servers": servers})
    before = asyncio.all_tasks()
    report = await run_checks(write_settings(tmp_path / "s.toml", settings), entry_points=False)
    time_server = by_check(report)["mcp time"]
    assert time_server.ok is True
    assert time_server.detail.endswith(", 2 tool(s)")  # get_current_time, convert_time
    assert asyncio.all_tasks() == before
    assert report.exit_code == 0
