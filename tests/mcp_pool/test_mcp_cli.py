"""``hermes-core mcp list|test``, ``hermes-core run`` stopped by a signal and SDK logging, all
through real ``hermes-core`` subprocesses. The contrib MCP plugin has its own tests, in
``contrib/hermes-mcp-example/tests``."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp_servers.helpers import (
    alive,
    free_port,
    marked_processes,
    mcp_settings,
    pids,
    toolbox_spec,
    wait_until,
)

from hermes_core.testing import cli_env, hermes_core, write_settings
from hermes_core.testing.processes import HERMES_CORE

MARKER = f"test-mcp-cli-{uuid.uuid4().hex}"
TIMEOUT_S = 120
#: No inherited ``HERMES_`` settings, and no entry-point plugins.
ENV = cli_env(HERMES_LOAD_PLUGINS="")


pytestmark = pytest.mark.usefixtures("no_leaked_servers")


def mcp(*args: str, settings: Path) -> subprocess.CompletedProcess[str]:
    """``hermes-core mcp ARGS --settings SETTINGS``, run in the settings file's folder."""
    return hermes_core(
        "mcp", *args, "--settings", str(settings), env=ENV, cwd=settings.parent, timeout_s=TIMEOUT_S
    )


def write_servers(where: Path, servers: dict[str, Any], **mcp: Any) -> Path:
    """A settings file in ``where`` with ``servers`` as its MCP servers (see ``mcp_settings``)."""
    return write_settings(where / "s.toml", mcp_settings(servers, **mcp))


# --- mcp test ------------------------------------------------------------------------------


def test_mcp_test_starts_lists_tools_and_stops(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    settings = write_servers(tmp_path, {"toolbox": toolbox_spec(MARKER, pid_file)})

    done = mcp("test", "toolbox", settings=settings)

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
    settings = write_servers(tmp_path, {"broken": spec})

    done = mcp("test", "broken", settings=settings)

    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"hermes-core: mcp test broken: {reason.replace('{port}', port)}")


def test_mcp_test_unknown_server_is_a_config_error(tmp_path: Path) -> None:
    settings = write_servers(tmp_path, {"toolbox": toolbox_spec(MARKER)})

    done = mcp("test", "nope", settings=settings)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "hermes-core: error: mcp test: no MCP server named 'nope' (known: toolbox)"
    ]


def test_mcp_list_bad_setting_is_one_line(tmp_path: Path) -> None:
    settings = write_servers(tmp_path, {"x": {"command": "x", "timeout": 3}})

    done = mcp("list", settings=settings)

    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("hermes-core: error: mcp.servers.x.timeout: unknown key")


# --- mcp list ------------------------------------------------------------------------------


def test_mcp_list_no_start_starts_nothing(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    settings = write_servers(tmp_path, {"toolbox": toolbox_spec(MARKER, pid_file)})

    done = mcp("list", "--no-start", settings=settings)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "toolbox  source=settings  transport=stdio  state=idle  tools: -"
    ]
    assert pids(pid_file) == []


# --- hermes-core run stopped by a signal ----------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_stopped_by_signal_leaves_no_mcp_process(tmp_path: Path, signum: int) -> None:
    pid_file = tmp_path / "pids"
    servers = {"a": toolbox_spec(MARKER, pid_file), "b": toolbox_spec(MARKER, pid_file)}
    settings = write_servers(tmp_path, servers, eager=True)
    process = subprocess.Popen(
        [HERMES_CORE, "run", "--settings", str(settings)],
        stdin=subprocess.PIPE,  # kept open: the console platform keeps running
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=ENV,
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
