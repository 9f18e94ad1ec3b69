"""``hermes-core mcp list|test``, ``hermes-core run`` stopped by a signal, the contrib MCP
plugin and SDK logging, all through real ``hermes-core`` subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_servers.helpers import (
    alive,
    free_port,
    marked_processes,
    pids,
    toolbox_spec,
    wait_until,
)

from hermes_core.testing import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
MARKER = f"test-mcp-cli-{uuid.uuid4().hex}"
TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def no_leaked_servers() -> Iterator[None]:
    yield
    wait_until(lambda: not marked_processes(MARKER), "MCP servers to be gone", timeout_s=10)


def toml_value(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML


def write_settings(path: Path, servers: dict[str, dict[str, Any]], **extra: str) -> Path:
    """A settings file with a provider (unused unless a run happens) and ``servers``."""
    lines = [
        "[agent]",
        'model = "local:ok"',
        "[providers.local]",
        f'base_url = "{extra.pop("base_url", "http://127.0.0.1:9/v1")}"',
        "max_retries = 0",
        "[store]",
        'path = ":memory:"',
    ]
    for section, body in extra.items():
        lines += [f"[{section}]", textwrap.dedent(body)]
    for name, spec in servers.items():
        lines.append(f'[mcp.servers."{name}"]')
        for key, value in spec.items():
            if isinstance(value, dict):
                pairs = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {pairs} }}")
            else:
                lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def env(*paths: Path, **variables: str) -> dict[str, str]:
    """No inherited ``HERMES_`` settings; ``paths`` on ``PYTHONPATH``; entry points limited."""
    result = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    result.pop("PYTHONPATH", None)
    if paths:
        result["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    result.setdefault("HERMES_LOAD_PLUGINS", "")
    result.update(variables)
    return result


def hermes(
    *args: str, cwd: Path, environ: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HERMES_CORE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ or env(),
        timeout=TIMEOUT_S,
    )


# --- mcp test ------------------------------------------------------------------------------


def test_mcp_test_starts_lists_tools_and_stops(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    settings = write_settings(tmp_path / "s.toml", {"toolbox": toolbox_spec(MARKER, pid_file)})

    done = hermes("mcp", "test", "toolbox", "--settings", str(settings), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("toolbox: ready in ")
    assert "initialize" in lines[0] and lines[0].endswith("7 tool(s)")
    assert "  add: Add two integers." in lines
    assert lines[-1].startswith("toolbox: stopped in ")
    (pid,) = pids(pid_file)
    assert not alive(pid)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            {"command": f"no-such-command-{MARKER}"},
            f"command not found: 'no-such-command-{MARKER}'",
        ),
        (
            {
                "command": "python3",
                "args": ["-c", "import time; time.sleep(600)", MARKER],
                "startup_timeout_s": 1,
            },
            "no MCP handshake within 1s (startup_timeout_s)",
        ),
        ({"url": "http://127.0.0.1:{port}/mcp"}, "cannot reach http://127.0.0.1:{port}/mcp: "),
    ],
    ids=["missing-command", "handshake-timeout", "url-refused"],
)
def test_mcp_test_fails_in_one_line(tmp_path: Path, spec: dict[str, Any], reason: str) -> None:
    port = str(free_port())  # nothing listens there
    spec = {k: v.replace("{port}", port) if isinstance(v, str) else v for k, v in spec.items()}
    settings = write_settings(tmp_path / "s.toml", {"broken": spec})

    done = hermes("mcp", "test", "broken", "--settings", str(settings), cwd=tmp_path)

    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"hermes-core: mcp test broken: {reason.replace('{port}', port)}")


def test_mcp_test_unknown_server_is_a_config_error(tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "s.toml", {"toolbox": toolbox_spec(MARKER)})

    done = hermes("mcp", "test", "nope", "--settings", str(settings), cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "hermes-core: error: mcp test: no MCP server named 'nope' (known: toolbox)"
    ]


def test_mcp_list_bad_setting_is_one_line(tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "s.toml", {"x": {"command": "x", "timeout": 3}})

    done = hermes("mcp", "list", "--settings", str(settings), cwd=tmp_path)

    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("hermes-core: error: mcp.servers.x.timeout: unknown key")


# --- the contrib plugin and mcp list --------------------------------------------------------


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``contrib/hermes-mcp-example`` pip-installed into a directory (not the venv)."""
    work = tmp_path_factory.mktemp("mcp-example")
    source = shutil.copytree(
        REPO / "contrib" / "hermes-mcp-example",
        work / "src",
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    site = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip, "--target", str(site), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


def test_mcp_list_shows_settings_and_plugin_servers(tmp_path: Path, example_site: Path) -> None:
    settings = write_settings(
        tmp_path / "s.toml",
        {
            "toolbox": toolbox_spec(MARKER, tools=["echo", "add"]),
            "off": {"command": "unused", "enabled": False},
        },
    )
    environ = env(example_site, HERMES_LOAD_PLUGINS="mcp_example")

    done = hermes(
        "mcp", "list", "--json", "--settings", str(settings), cwd=tmp_path, environ=environ
    )

    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["text"] == {
        "name": "text",
        "source": "mcp_example",
        "transport": "stdio",
        "state": "ready",
        "tools": ["word_count", "reverse", "slugify"],
        "starts": 1,
        "restarts": 0,
        "last_error": None,
    }
    assert (rows["toolbox"]["source"], rows["toolbox"]["tools"]) == ("settings", ["echo", "add"])
    assert rows["off"]["state"] == "disabled"
    assert not marked_processes(str(example_site))  # the plugin's server was stopped too


def test_mcp_list_no_start_starts_nothing(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    settings = write_settings(tmp_path / "s.toml", {"toolbox": toolbox_spec(MARKER, pid_file)})

    done = hermes("mcp", "list", "--no-start", "--settings", str(settings), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "toolbox  source=settings  transport=stdio  state=idle  tools: -"
    ]
    assert pids(pid_file) == []


def test_plugin_server_tool_round_trip_in_the_console(
    tmp_path: Path, example_site: Path, fake_openai: FakeOpenAI
) -> None:
    settings = write_settings(tmp_path / "s.toml", {}, base_url=fake_openai.url)
    settings.write_text(settings.read_text().replace('"local:ok"', '"local:tool-model"'))
    environ = env(example_site, HERMES_LOAD_PLUGINS="mcp_example")

    done = hermes(
        "run",
        "--settings",
        str(settings),
        cwd=tmp_path,
        environ=environ,
        stdin='call word_count {"text": "one two three"}\ncall reverse {"text": "abc"}\n',
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["tool results: 3", "tool results: cba"]
    assert not marked_processes(str(example_site))


# --- hermes-core run stopped by a signal ----------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_stopped_by_signal_leaves_no_mcp_process(tmp_path: Path, signum: int) -> None:
    pid_file = tmp_path / "pids"
    settings = write_settings(
        tmp_path / "s.toml",
        {"a": toolbox_spec(MARKER, pid_file), "b": toolbox_spec(MARKER, pid_file)},
        mcp="eager = true",
    )
    process = subprocess.Popen(
        [HERMES_CORE, "run", "--settings", str(settings)],
        stdin=subprocess.PIPE,  # kept open: the console platform keeps running
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env(),
    )
    try:
        wait_until(lambda: len(pids(pid_file)) == 2 or process.poll() is not None, "2 servers")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        servers = pids(pid_file)
        wait_until(lambda: all(alive(pid) for pid in servers), "servers alive")

        process.send_signal(signum)
        _, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert not any(alive(pid) for pid in servers)
    assert marked_processes(MARKER) == []


# --- logging -------------------------------------------------------------------------------


def test_sdk_stdlib_logging_goes_through_loguru(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import logging
        from hermes_core.log import configure_logging

        configure_logging("INFO")
        logging.getLogger("mcp.client.stdio").warning("sdk says %s", "hello")
        logging.getLogger("mcp.client.stdio").debug("hidden at INFO")
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.endswith(" WARNING sdk says hello")  # loguru's format, not logging's
