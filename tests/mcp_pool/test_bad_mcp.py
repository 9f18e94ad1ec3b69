"""The broken-MCP-server matrix: servers that print garbage on stdout or hang at start-up.

Each broken server sits beside a working one (the toolbox). The broken one must end in one
line saying what is wrong, in the pool's status and in ``hermes-core mcp list``/``mcp test``;
plain chat and the toolbox's tools keep working meanwhile; a hung server is killed, whole
process group, once its ``startup_timeout_s`` has passed; and every failed start is followed
by a growing wait, never a tight restart loop. Every process started here carries this
module's marker, and the ``no_leaked_servers`` fixture, on every test, checks ``/proc`` for them.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_servers.helpers import (
    MARKER_ENV,
    alive,
    eventually,
    mcp_settings,
    pids,
    toolbox_spec,
)

from hermes_core.gateway import Gateway
from hermes_core.mcp.connection import ServerState
from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    send,
    settings_for,
    start_hermes_core,
    write_settings,
)

MakeGateway = Callable[..., Awaitable[Gateway]]
MARKER = f"test-bad-mcp-{uuid.uuid4().hex}"
SERVERS = Path(__file__).resolve().parents[1] / "mcp_servers"
STARTUP_TIMEOUT_S = 1
#: The SDK's own kill escalation after a failed start: 2 s for the process to exit once its
#: stdin is closed, then SIGTERM to the group, 2 s more, then SIGKILL.
KILL_ESCALATION_S = 4
#: What the text-mode garbage server writes first.
BANNER = "Starting garbage server v1.0 on stdio..."
NOT_JSON_RPC = (
    f"no MCP handshake within {STARTUP_TIMEOUT_S}s (startup_timeout_s); it wrote output that "
    "is not JSON-RPC on stdout (its logs belong on stderr): "
)
NO_HANDSHAKE = f"no MCP handshake within {STARTUP_TIMEOUT_S}s (startup_timeout_s)"


pytestmark = pytest.mark.usefixtures("no_leaked_servers")


def garbage_spec(mode: str, pid_file: Path | None = None) -> dict[str, Any]:
    """``mcp.servers.<name>`` for ``garbage_server.py`` in ``mode`` (text, json, binary)."""
    env = {MARKER_ENV: MARKER}
    if pid_file is not None:
        env["GARBAGE_PID_FILE"] = str(pid_file)
    script = str(SERVERS / "garbage_server.py")
    return {
        "command": sys.executable,
        "args": [script, mode, "--marker", MARKER],
        "env": env,
        "startup_timeout_s": STARTUP_TIMEOUT_S,
    }


def hang_spec(pid_file: Path) -> dict[str, Any]:
    """``mcp.servers.<name>`` for ``hang_server.py`` (it and its child ignore SIGTERM)."""
    return {
        "command": sys.executable,
        "args": [str(SERVERS / "hang_server.py"), "--marker", MARKER],
        "env": {MARKER_ENV: MARKER, "HANG_PID_FILE": str(pid_file)},
        "startup_timeout_s": STARTUP_TIMEOUT_S,
    }


def settings(
    fake_openai: FakeOpenAI, servers: dict[str, dict[str, Any]], **mcp: Any
) -> dict[str, Any]:
    result = settings_for(
        fake_openai.url,
        "tool-primary",
        mcp={"backoff_initial_s": 60, **mcp, "servers": servers},
        store={"path": ":memory:"},
    )
    result["providers"]["local"]["timeout_s"] = 60  # any tool round trip, however loaded
    return result


async def chat_keeps_working(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """The toolbox's tools and plain chat both answer, whatever the broken server does."""
    tool = await send(gateway, 'call echo {"text": "still here"}')
    assert tool.text == "tool results: echo: still here"
    offered = {t["function"]["name"] for t in fake_openai.requests[0].tools or []}
    assert "toolbox__echo" in offered
    assert not any(name.startswith(("garbage", "hung")) for name in offered)
    switched = await send(gateway, "/model local:ok-primary", "plain")
    assert switched.text == "Model set to local:ok-primary for this session."
    plain = await send(gateway, "just chat", "plain")
    assert plain.text == "[ok-primary] just chat (user messages: 1)"


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("text", NOT_JSON_RPC + repr(BANNER)),
        ("json", NOT_JSON_RPC + """'{"hello": "world", "echo": """),
        ("binary", "the server wrote bytes that are not UTF-8 on stdout: invalid start byte"),
    ],
    ids=["prose", "JSON but not JSON-RPC", "not UTF-8"],
)
async def test_garbage_on_stdout_is_one_line_and_everything_else_keeps_serving(
    mode: str, error: str, make_gateway: MakeGateway, fake_openai: FakeOpenAI
) -> None:
    servers = {"garbage": garbage_spec(mode), "toolbox": toolbox_spec(MARKER)}
    gateway = await make_gateway(settings(fake_openai, servers))

    await chat_keeps_working(gateway, fake_openai)

    connection = gateway.mcp_pool.connections["garbage"]
    assert connection.state is ServerState.BACKOFF
    assert connection.starts == 1
    assert connection.last_error is not None
    assert connection.last_error.startswith(error)
    assert "\n" not in connection.last_error
    rows = {row["name"]: row for row in gateway.mcp_pool.status()}
    assert rows["garbage"]["state"] == "backoff"
    assert rows["garbage"]["last_error"] == connection.last_error
    assert rows["garbage"]["tools"] == []
    assert rows["toolbox"]["state"] == "ready"


async def test_a_hung_server_is_killed_after_its_startup_timeout_then_left_alone(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    pid_file = tmp_path / "hung.pids"
    servers = {"hung": hang_spec(pid_file), "toolbox": toolbox_spec(MARKER)}
    gateway = await make_gateway(settings(fake_openai, servers, backoff_initial_s=30))
    connection = gateway.mcp_pool.connections["hung"]

    await chat_keeps_working(gateway, fake_openai)

    assert connection.last_error == NO_HANDSHAKE
    server, child = pids(pid_file)  # the child is in the server's process group
    assert not alive(server) and not alive(child)
    # Given up once the start-up timeout had passed; the kill took the SDK's escalation.
    (started, _), (gave_up, state) = connection.history[1], connection.history[2]
    assert state is ServerState.BACKOFF
    assert STARTUP_TIMEOUT_S <= gave_up - started < STARTUP_TIMEOUT_S + KILL_ESCALATION_S + 10
    # Not restarted at once: the next start waits backoff_initial_s (doubling after that,
    # see the next test).
    assert connection.starts == 1
    assert connection.backoff_s == 30
    assert connection.retry_at is not None and connection.retry_at - gave_up > 29


async def test_a_server_that_never_handshakes_is_retried_with_doubling_waits(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    pid_file = tmp_path / "garbage.pids"
    servers = {"garbage": garbage_spec("text", pid_file)}
    gateway = await make_gateway(
        settings(fake_openai, servers, eager=True, backoff_initial_s=0.2, backoff_max_s=0.4)
    )
    connection = gateway.mcp_pool.connections["garbage"]

    await eventually(lambda: connection.starts == 4, "the fourth start")

    waits = [
        (later[0] - moment, later[1])
        for (moment, state), later in itertools.pairwise(connection.history)
        if state is ServerState.BACKOFF
    ]
    assert [state for _, state in waits] == [ServerState.STARTING] * 3
    for (wait, _), minimum in zip(waits, [0.2, 0.4, 0.4], strict=True):  # capped at 0.4
        assert wait >= minimum - 0.01  # the event loop's clock resolution
    # One process per start; the earlier ones are gone.
    assert len(pids(pid_file)) >= 3
    assert not any(alive(pid) for pid in pids(pid_file)[:3])
    # And each attempt lasted its start-up timeout before giving up.
    attempts = [
        later[0] - moment
        for (moment, state), later in itertools.pairwise(connection.history)
        if state is ServerState.STARTING
    ]
    assert all(attempt >= STARTUP_TIMEOUT_S for attempt in attempts)


# --- the command line ----------------------------------------------------------------------


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """``hermes-core ARGS`` without entry-point plugins, not waited for."""
    return start_hermes_core(*args, env=cli_env(HERMES_LOAD_PLUGINS=""), cwd=cwd)


def test_mcp_list_and_mcp_test_say_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    hang_pids = tmp_path / "hung.pids"
    servers = {
        "garbage": garbage_spec("text"),
        "hung": hang_spec(hang_pids),
        "toolbox": toolbox_spec(MARKER),
    }
    # One start each, however long the others take.
    settings = mcp_settings(servers, backoff_initial_s=60)
    settings_file = str(write_settings(tmp_path / "settings.toml", settings))
    processes = {
        "list": start("mcp", "list", "--settings", settings_file, cwd=tmp_path),
        "test": start("mcp", "test", "garbage", "--settings", settings_file, cwd=tmp_path),
    }
    try:
        done = {name: (p.communicate(timeout=120), p.returncode) for name, p in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    (listed, list_errors), list_code = done["list"]
    assert list_code == 0, list_errors
    assert listed.splitlines() == [
        "garbage  source=settings  transport=stdio  state=backoff  tools: -",
        f"    error: {NOT_JSON_RPC}{BANNER!r}",
        "hung  source=settings  transport=stdio  state=backoff  tools: -",
        f"    error: {NO_HANDSHAKE}",
        "toolbox  source=settings  transport=stdio  state=ready  tools: "
        "echo, add, sleep, fail, crash, pid, grow",
    ]
    (tested, test_errors), test_code = done["test"]
    assert test_code == 1
    assert tested == ""
    assert test_errors.splitlines() == [f"hermes-core: mcp test garbage: {NOT_JSON_RPC}{BANNER!r}"]
    # The hung server and its child were killed before the command ended.
    assert len(pids(hang_pids)) == 2
    assert not any(alive(pid) for pid in pids(hang_pids))


# --- a chatty server cannot flood the log --------------------------------------------------

CHATTY_LINES = 300


@pytest.fixture
def warnings_logged() -> Iterator[list[tuple[str, bool]]]:
    """``(message, has a traceback)`` of every WARNING and above logged through loguru,
    the mcp SDK's stdlib logs included (the CLI routes them there; so does this fixture)."""
    import logging

    from loguru import logger

    from hermes_core.log import InterceptHandler

    records: list[tuple[str, bool]] = []
    logger.enable("hermes_core")
    sink = logger.add(
        lambda m: records.append((m.record["message"], m.record["exception"] is not None)),
        level="WARNING",
    )
    handler = InterceptHandler()
    logging.getLogger("mcp").addHandler(handler)
    yield records
    logging.getLogger("mcp").removeHandler(handler)
    logger.remove(sink)
    logger.disable("hermes_core")


def chatty_spec() -> dict[str, Any]:
    spec = toolbox_spec(MARKER)
    return {**spec, "args": [*spec["args"], "--chatty", str(CHATTY_LINES)]}


async def test_a_chatty_server_is_one_warning_with_the_count_not_a_traceback_per_line(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, warnings_logged: list[tuple[str, bool]]
) -> None:
    gateway = await make_gateway(settings(fake_openai, {"chatty": chatty_spec()}))

    reply = await send(gateway, 'call echo {"text": "still here"}')
    assert reply.text == "tool results: echo: still here"
    assert gateway.mcp_pool.connections["chatty"].bad_output.total == CHATTY_LINES
    await gateway.stop()

    assert not any(traceback for _, traceback in warnings_logged)
    assert [message for message, _ in warnings_logged] == [
        f"mcp server 'chatty': ignored {CHATTY_LINES} line(s) of its output that are not "
        "JSON-RPC (first: 'INFO toolbox: warming up, step 0'); a stdio server's logs belong on "
        "stderr (reported at most once every 60s)"
    ]


async def test_the_report_comes_once_its_interval_is_over_and_stop_adds_none(
    make_gateway: MakeGateway, fake_openai: FakeOpenAI, warnings_logged: list[tuple[str, bool]]
) -> None:
    gateway = await make_gateway(settings(fake_openai, {"chatty": chatty_spec()}))
    gateway.mcp_pool.connections["chatty"].bad_output.interval_s = 0.5  # not a minute

    await send(gateway, 'call echo {"text": "hi"}')
    await eventually(lambda: bool(warnings_logged), "the report")
    await gateway.stop()

    ((message, traceback),) = warnings_logged
    assert f"ignored {CHATTY_LINES} line(s)" in message and "'chatty'" in message
    assert not traceback
