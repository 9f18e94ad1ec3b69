"""Helpers for the MCP tests: server specs, PID files, process checks and polling.

Every server a test starts carries ``HERMES_MCP_TEST_MARKER=<marker>`` in its environment, so
:func:`marked_processes` can prove, by scanning ``/proc``, that none outlived the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hermes_core.testing import processes_mentioning, settings_for

TOOLBOX = Path(__file__).with_name("toolbox.py")
MARKER_ENV = "HERMES_MCP_TEST_MARKER"
#: Generous bounds: the suite shares two cores with other suites. They bound, never pace.
WAIT_S = 60.0


def toolbox_spec(marker: str, pid_file: Path | None = None, **keys: Any) -> dict[str, Any]:
    """``mcp.servers.<name>`` settings for the toolbox server over stdio."""
    env = {MARKER_ENV: marker}
    if pid_file is not None:
        env["TOOLBOX_PID_FILE"] = str(pid_file)
    return {"command": sys.executable, "args": [str(TOOLBOX)], "env": env, **keys}


def mcp_settings(
    servers: dict[str, dict[str, Any]],
    base_url: str = "http://127.0.0.1:9/v1",
    model: str = "ok",
    **mcp: Any,
) -> dict[str, Any]:
    """Settings with ``servers`` as ``mcp.servers``, the other ``mcp`` keys, an in-memory
    store, and a provider at ``base_url`` (nothing listens at the default: unused unless a run
    happens)."""
    return settings_for(
        base_url, model, store={"path": ":memory:"}, mcp={**mcp, "servers": servers}
    )


def time_spec(marker: str, **keys: Any) -> dict[str, Any]:
    """``mcp.servers.<name>`` settings for ``mcp-server-time`` from PyPI."""
    return {
        "command": sys.executable,
        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        "env": {MARKER_ENV: marker},
        **keys,
    }


def pids(pid_file: Path) -> list[int]:
    """The PIDs the toolbox recorded, one per start."""
    if not pid_file.exists():
        return []
    return [int(line) for line in pid_file.read_text().split()]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


#: PIDs of live processes with the marker in their environment or command line.
marked_processes = processes_mentioning


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` (blocking) until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_http_toolbox(marker: str, pid_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The toolbox over streamable HTTP on a free port, accepting; returns it and its URL."""
    port = free_port()
    env = {**os.environ, MARKER_ENV: marker, "TOOLBOX_PID_FILE": str(pid_file)}
    process = subprocess.Popen(
        [sys.executable, str(TOOLBOX), "--http", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: accepts(port) or process.poll() is not None, "the HTTP toolbox")
        assert process.poll() is None, "the HTTP toolbox exited at start"
    except BaseException:
        stop_process(process)
        raise
    return process, f"http://127.0.0.1:{port}/mcp"


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate, then kill after a grace period, and reap."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Like :func:`wait_until`, for async tests: the event loop keeps running meanwhile."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
