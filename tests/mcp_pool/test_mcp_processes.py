"""No MCP process outlives its server: stop, crash, restart, start-up timeout, cancel, kill -9.

The server here (``forking_server.py``) starts a helper first, as ``sh -c 'helper & exec
server'`` does; the helper stays in the server's process group, holds its stdout open, and
would outlive a server that exits at the end of its stdin. Each start records whether the
previous start's helper was still running at that moment, so the tests can prove it never was.
Every process carries this module's marker; ``no_leaked_servers`` checks ``/proc`` for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_servers.helpers import MARKER_ENV, alive, eventually

from hermes_core.gateway import Gateway
from hermes_core.mcp.connection import ServerState
from hermes_core.mcp.ledger import LEDGER_DIR, reap_leftovers
from hermes_core.testing import FakeOpenAI, cli_env, send, settings_for

MakeGateway = Callable[..., Awaitable[Gateway]]
MARKER = f"test-mcp-processes-{uuid.uuid4().hex}"
FORKING = Path(__file__).resolve().parents[1] / "mcp_servers" / "forking_server.py"
#: The longest a stop may take: stdin closed, 2 s to exit, SIGTERM, 2 s, SIGKILL (+ a busy host).
STOP_BOUND_S = 15


pytestmark = pytest.mark.usefixtures("no_leaked_servers")


def forking_spec(mode: str, pid_file: Path, **keys: Any) -> dict[str, Any]:
    return {
        "command": sys.executable,
        "args": [str(FORKING), mode, "--marker", MARKER],
        "env": {MARKER_ENV: MARKER, "FORKING_PID_FILE": str(pid_file)},
        **keys,
    }


def starts(pid_file: Path) -> list[tuple[int, int, bool]]:
    """``(server pid, helper pid, previous helper still running)`` for each start."""
    if not pid_file.exists():
        return []
    rows = [line.split() for line in pid_file.read_text().splitlines() if line.strip()]
    return [(int(server), int(helper), flag == "1") for server, helper, flag in rows]


StartForking = Callable[..., Awaitable[tuple[Gateway, Path]]]


@pytest.fixture
def start_forking(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> StartForking:
    """``gateway, pid_file = await start_forking(mode, server_keys, **mcp)``: a gateway whose
    one MCP server, ``forking``, is ``forking_server.py`` in ``mode`` with ``server_keys``
    added to its table, under ``mcp`` settings; ``pid_file`` records its starts."""

    async def start(
        mode: str, server_keys: dict[str, Any] | None = None, **mcp: Any
    ) -> tuple[Gateway, Path]:
        pid_file = tmp_path / "forking.pids"
        servers = {"forking": forking_spec(mode, pid_file, **(server_keys or {}))}
        settings = settings_for(
            fake_openai.url,
            "tool-primary",
            mcp={"backoff_initial_s": 60, **mcp, "servers": servers},
            store={"path": ":memory:"},
        )
        return await make_gateway(settings), pid_file

    return start


async def test_stopping_the_gateway_kills_the_helper_of_a_server_that_exits_on_eof(
    start_forking: StartForking,
) -> None:
    gateway, pid_file = await start_forking("serve")

    reply = await send(gateway, "call pid")
    ((server, helper, _),) = starts(pid_file)
    assert reply.text == f"tool results: {server}"  # exec: the server kept the pid
    assert alive(helper)

    await asyncio.wait_for(gateway.stop(), STOP_BOUND_S)

    assert not alive(server) and not alive(helper)


@pytest.mark.parametrize(
    ("mode", "startup_timeout_s", "backoff_s", "restarts", "last_error"),
    [
        # Far below 20 start-up timeouts: the exit is seen though the helper holds stdout open.
        pytest.param(
            "crash",
            30,
            (0.01, 0.02),
            20,
            "the server closed the connection during startup (see its stderr)",
            id="twenty restarts of a crashing server",
        ),
        pytest.param(
            "silent",
            0.3,
            (0.05, 0.05),
            2,
            "no MCP handshake within 0.3s (startup_timeout_s)",
            id="a start-up timeout kills the helper before the retry",
        ),
    ],
)
async def test_a_server_that_never_starts_is_retried_and_leaves_no_helper_behind(
    start_forking: StartForking,
    mode: str,
    startup_timeout_s: float,
    backoff_s: tuple[float, float],
    restarts: int,
    last_error: str,
) -> None:
    initial_s, max_s = backoff_s
    gateway, pid_file = await start_forking(
        mode,
        {"startup_timeout_s": startup_timeout_s},
        eager=True,
        backoff_initial_s=initial_s,
        backoff_max_s=max_s,
    )
    connection = gateway.mcp_pool.connections["forking"]

    await eventually(lambda: len(starts(pid_file)) > restarts, "the restarts", timeout_s=120)

    recorded = starts(pid_file)
    assert connection.restarts >= restarts
    # Each helper was gone before the next server started...
    assert [previous_alive for _, _, previous_alive in recorded] == [False] * len(recorded)
    # ...so at most the latest start's helper can still be running now.
    assert not any(alive(helper) for _, helper, _ in recorded[:-1])
    assert connection.last_error == last_error
    await asyncio.wait_for(gateway.stop(), STOP_BOUND_S)
    assert not any(alive(helper) for _, helper, _ in starts(pid_file))


async def test_stopping_during_the_handshake_kills_the_helper(
    start_forking: StartForking,
) -> None:
    gateway, pid_file = await start_forking("silent", {"startup_timeout_s": 120}, eager=True)
    connection = gateway.mcp_pool.connections["forking"]
    await eventually(lambda: len(starts(pid_file)) == 1, "the start")
    assert connection.state is ServerState.STARTING

    await asyncio.wait_for(gateway.stop(), STOP_BOUND_S)  # the attempt is cancelled

    ((server, helper, _),) = starts(pid_file)
    assert not alive(server) and not alive(helper)


# --- kill -9 of the gateway ---------------------------------------------------------------


def write_run_settings(tmp_path: Path, pid_file: Path) -> Path:
    spec = forking_spec("serve", pid_file)
    env = ", ".join(f"{key} = {json.dumps(value)}" for key, value in spec["env"].items())
    path = tmp_path / "settings.toml"
    path.write_text(
        f"""
[logging]
level = "INFO"
[agent]
model = "local:ok"
[providers.local]
base_url = "http://127.0.0.1:9/v1"
[store]
path = {json.dumps(str(tmp_path / "state" / "sessions.db"))}
[platforms.http]
enabled = true
port = 0
[mcp]
eager = true
[mcp.servers.forking]
command = {json.dumps(spec["command"])}
args = {json.dumps(spec["args"])}
env = {{ {env} }}
"""
    )
    return path


def start_run(settings_file: Path, log: Path) -> subprocess.Popen[bytes]:
    """``hermes-core run`` with its logs in ``log``: a file, not a pipe, since its servers and
    their helpers inherit it (a pipe would stay open while a helper lives)."""
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "hermes_core", "run", "--settings", str(settings_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=cli_env(HERMES_LOAD_PLUGINS=""),
            start_new_session=True,
        )


def recorded_groups(ledger: Path) -> list[int]:
    return [
        group["pgid"]
        for path in ledger.glob("*.json")
        for group in json.loads(path.read_text())["groups"]
    ]


async def test_the_next_run_kills_what_a_gateway_killed_with_sigkill_left(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "forking.pids"
    settings_file = write_run_settings(tmp_path, pid_file)
    ledger = tmp_path / "state" / LEDGER_DIR
    first = start_run(settings_file, tmp_path / "first.log")
    try:
        await eventually(lambda: len(starts(pid_file)) == 1, "the first run's server")
        ((server, helper, _),) = starts(pid_file)
        await eventually(lambda: server in recorded_groups(ledger), "its recorded group")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    # The server exits at the end of its stdin; its helper is what the dead gateway left.
    await eventually(lambda: not alive(server), "the orphaned server to exit")
    assert alive(helper), (tmp_path / "first.log").read_text()

    second = start_run(settings_file, tmp_path / "second.log")
    try:
        await eventually(lambda: not alive(helper), "the leftover helper to be killed")
        await eventually(lambda: len(starts(pid_file)) == 2, "the second run's server")
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait(30)

    logs = (tmp_path / "second.log").read_text()
    assert f"killed the leftover process group {server} of MCP server 'forking'" in logs
    assert f"(pid {first.pid}) ended without stopping it" in logs
    assert not any(alive(pid) for row in starts(pid_file) for pid in row[:2])
    assert list(ledger.iterdir()) == []  # the dead run's record and the second's own are gone


# --- the record is trusted only as far as it proves itself -------------------------------------


def _stat_start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _write_record(directory: Path, owner: dict[str, Any], groups: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps({"owner": owner, "groups": groups}))
    return path


@pytest.fixture
def group_leader() -> Iterator[subprocess.Popen[bytes]]:
    """A live process leading its own group and session, as a stdio server does."""
    process = subprocess.Popen(
        ["sleep", "600"], start_new_session=True, env={**os.environ, MARKER_ENV: MARKER}
    )
    yield process
    process.kill()
    process.wait()


async def test_a_recycled_pid_or_a_live_owner_is_never_signalled(
    tmp_path: Path, group_leader: subprocess.Popen[bytes]
) -> None:
    from hermes_core.mcp.groups import boot_id

    pid = group_leader.pid
    boot = boot_id()
    dead_owner = {"pid": 2**22 + 1, "start_time": 1, "boot": boot}  # above pid_max: no such pid
    live_owner = {"pid": os.getpid(), "start_time": _stat_start_time(os.getpid()), "boot": boot}
    right = {"pgid": pid, "start_time": _stat_start_time(pid), "server": "s"}
    recycled = {**right, "start_time": right["start_time"] - 1}  # the pid now names another
    directory = tmp_path / LEDGER_DIR
    kept = _write_record(directory, live_owner, [right])
    dropped = _write_record(directory, dead_owner, [recycled])

    assert await reap_leftovers(directory) == 0

    assert group_leader.poll() is None  # untouched both times
    assert kept.exists() and not dropped.exists()
    kept.unlink()
    _write_record(directory, dead_owner, [right])

    assert await reap_leftovers(directory) == 1

    assert group_leader.wait(10) == -signal.SIGTERM
    assert list(directory.iterdir()) == []
