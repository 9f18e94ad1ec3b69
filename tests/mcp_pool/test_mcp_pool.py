"""The gateway-wide MCP pool, against real MCP servers (the toolbox, mcp-server-time).

Every server started here carries this module's marker in its environment; the
``no_leaked_servers`` fixture, on every test, fails one that leaves any of them running.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_servers.helpers import (
    alive,
    eventually,
    free_port,
    marked_processes,
    pids,
    start_http_toolbox,
    stop_process,
    time_spec,
    toolbox_spec,
)

from hermes_core import hookimpl
from hermes_core.cache import AgentCache
from hermes_core.errors import ConfigError
from hermes_core.gateway import Gateway
from hermes_core.mcp.connection import ServerState
from hermes_core.mcp.pool import UNAVAILABLE_PREFIX
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for
from hermes_core.types import Reply, Session

MARKER = f"test-mcp-pool-{uuid.uuid4().hex}"
#: Lets the fake model run long enough for any tool round trip, however loaded the machine.
PROVIDER_TIMEOUT_S = 60


pytestmark = pytest.mark.usefixtures("no_leaked_servers")


@pytest.fixture
def pid_file(tmp_path: Path) -> Path:
    return tmp_path / "toolbox.pids"


def settings(
    fake_openai: FakeOpenAI,
    model: str,
    fallbacks: list[str] | None = None,
    *,
    servers: dict[str, dict[str, Any]],
    **sections: dict[str, Any],
) -> dict[str, Any]:
    mcp = {"backoff_initial_s": 0.1, **sections.pop("mcp", {}), "servers": servers}
    sections.setdefault("store", {"path": ":memory:"})
    result = settings_for(fake_openai.url, model, fallbacks, mcp=mcp, **sections)
    result["providers"]["local"]["timeout_s"] = PROVIDER_TIMEOUT_S
    return result


PoolGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def pool_gateway(
    make_gateway: Callable[..., Awaitable[Gateway]], fake_openai: FakeOpenAI, pid_file: Path
) -> PoolGateway:
    """``await pool_gateway(model, fallbacks=None, servers=None, **sections)``: a started gateway
    from :func:`settings`; its only MCP server is the toolbox recording its PIDs in ``pid_file``
    unless ``servers`` says otherwise."""

    async def make(
        model: str,
        fallbacks: list[str] | None = None,
        *,
        servers: dict[str, dict[str, Any]] | None = None,
        **sections: dict[str, Any],
    ) -> Gateway:
        servers = servers if servers is not None else {"toolbox": toolbox_spec(MARKER, pid_file)}
        return await make_gateway(
            settings(fake_openai, model, fallbacks, servers=servers, **sections)
        )

    return make


def one_tool_result(reply: Reply) -> str:
    """The tool result the scripted model quotes back, after checking that the run answered
    with exactly one tool call."""
    assert reply.result is not None
    assert not reply.result["failed"]
    assert reply.result["tool_calls"] == 1
    assert reply.text.startswith("tool results: "), reply.text
    return reply.text.removeprefix("tool results: ")


def offered(fake_openai: FakeOpenAI, index: int = -1) -> list[str]:
    """Tool names offered in one recorded request (the last by default)."""
    tools = fake_openai.requests[index].tools or []
    return [tool["function"]["name"] for tool in tools]


# --- process starts: the pool outlives agents ------------------------------------------


@pytest.mark.parametrize("threshold", [3, 1000], ids=["breaker-default", "breaker-off"])
async def test_seed_scenario_starts_the_server_exactly_once(
    pool_gateway: PoolGateway,
    fake_openai: FakeOpenAI,
    pid_file: Path,
    threshold: int,
) -> None:
    gateway = await pool_gateway(
        "bad-primary", ["bad-fallback"], circuit_breaker={"threshold": threshold}
    )

    for index in range(20):
        reply = await send(gateway, f"message {index}")
        assert reply.result is not None and reply.result["failed"]

    llm_runs = min(threshold, 20)  # once open, the breaker answers without the LLM
    assert len(fake_openai.requests) == 2 * llm_runs
    assert all("toolbox__echo" in offered(fake_openai, i) for i in range(2 * llm_runs))
    assert len(pids(pid_file)) == 1
    assert gateway.mcp_pool.connections["toolbox"].starts == 1


async def test_twenty_evictions_start_the_server_once(
    pool_gateway: PoolGateway,
    pid_file: Path,
    hook_recorder: HookRecorder,
) -> None:
    gateway = await pool_gateway("bad-primary", ["ok-fallback"], mcp={"eager": True})

    for index in range(20):
        reply = await send(gateway, f"message {index}")
        assert reply.result is not None and reply.result["fallback_used"]
        assert not reply.result["failed"]

    evictions = hook_recorder.of("on_evict")
    assert [e["reason"] for e in evictions] == ["fallback_succeeded"] * 20
    assert len({id(e["agent"]) for e in evictions}) == 20  # twenty distinct agents
    assert len(pids(pid_file)) == 1
    assert gateway.mcp_pool.connections["toolbox"].state is ServerState.READY


class EvictAlways:
    """In-process copy of contrib/hermes-evict-always: evict after every run."""

    @hookimpl
    def post_run(self, session: Session, cache: AgentCache) -> None:
        cache.evict(session.key, "evict_always")


async def test_evict_always_policy_still_starts_the_server_once(
    pool_gateway: PoolGateway,
    pid_file: Path,
    register_plugin: Callable[..., object],
    hook_recorder: HookRecorder,
) -> None:
    register_plugin(EvictAlways(), "evict-always")
    gateway = await pool_gateway(
        "bad-primary", ["bad-fallback"], circuit_breaker={"threshold": 1000}
    )

    for index in range(20):
        await send(gateway, f"message {index}")

    assert [e["reason"] for e in hook_recorder.of("on_evict")] == ["evict_always"] * 20
    assert len(pids(pid_file)) == 1


async def test_sessions_share_one_connection(pool_gateway: PoolGateway, pid_file: Path) -> None:
    gateway = await pool_gateway("tool-primary")

    replies = [await send(gateway, "call pid", session_key=f"s:{n}") for n in range(3)]

    server_pid = pids(pid_file)
    assert len(server_pid) == 1
    assert [r.text for r in replies] == [f"tool results: {server_pid[0]}"] * 3


# --- tool round trips ----------------------------------------------------------------------


async def test_round_trip_with_mcp_server_time(
    pool_gateway: PoolGateway, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    gateway = await pool_gateway("tool-primary", servers={"time": time_spec(MARKER)})

    reply = await send(gateway, 'call get_current_time {"timezone": "UTC"}')

    assert '"timezone": "UTC"' in one_tool_result(reply)
    assert {"time__get_current_time", "time__convert_time"} <= set(offered(fake_openai, 0))
    tool_message = fake_openai.requests[-1].messages[-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] in reply.text
    (post,) = hook_recorder.of("post_tool_call")
    assert post["tool"] == "time__get_current_time"
    assert post["arguments"] == {"timezone": "UTC"}
    assert [c["tool"] for c in hook_recorder.of("pre_tool_call")] == ["time__get_current_time"]


async def test_round_trip_over_streamable_http(pool_gateway: PoolGateway, pid_file: Path) -> None:
    process, url = start_http_toolbox(MARKER, pid_file)
    try:
        gateway = await pool_gateway("tool-primary", servers={"web": {"url": url}})

        reply = await send(gateway, 'call add {"a": 2, "b": 40}')

        assert reply.text == "tool results: 42"
        assert gateway.mcp_pool.connections["web"].spec.transport == "http"
        await gateway.stop()
    finally:
        stop_process(process)


async def test_several_tool_calls_run_in_one_round(
    pool_gateway: PoolGateway,
) -> None:
    gateway = await pool_gateway("tool-primary", servers={"toolbox": toolbox_spec(MARKER)})

    reply = await send(gateway, "call-many pid pid")

    assert reply.result is not None and reply.result["tool_calls"] == 2
    first, second = reply.text.removeprefix("tool results: ").split(" | ")
    assert first == second and first.isdigit()


async def test_tool_error_result_is_text_for_the_model(
    pool_gateway: PoolGateway,
) -> None:
    gateway = await pool_gateway("tool-primary", servers={"toolbox": toolbox_spec(MARKER)})

    reply = await send(gateway, 'call fail {"reason": "disk on fire"}')

    assert one_tool_result(reply).startswith("error: ")
    assert "disk on fire" in reply.text


async def test_tool_call_over_timeout_returns_a_timeout_result(
    pool_gateway: PoolGateway,
) -> None:
    gateway = await pool_gateway(
        "tool-primary", servers={"toolbox": toolbox_spec(MARKER, timeout_s=0.5)}
    )

    reply = await send(gateway, 'call sleep {"seconds": 120}')

    result = one_tool_result(reply)
    assert result == "error: tool 'sleep' on MCP server 'toolbox' timed out after 0.5s"
    assert reply.result is not None and reply.result["duration_s"] < 60
    # The connection survives a timed-out call.
    assert (await send(gateway, 'call add {"a": 1, "b": 1}')).text == "tool results: 2"


async def test_allowlist_limits_the_offered_tools(
    pool_gateway: PoolGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await pool_gateway(
        "ok-primary", servers={"toolbox": toolbox_spec(MARKER, tools=["echo", "add"])}
    )

    await send(gateway, "hello")

    assert offered(fake_openai) == ["toolbox__echo", "toolbox__add"]


async def test_tool_list_changed_refreshes_the_offer(
    pool_gateway: PoolGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await pool_gateway("tool-primary", servers={"toolbox": toolbox_spec(MARKER)})
    connection = gateway.mcp_pool.connections  # filled at start

    reply = await send(gateway, 'call grow {"name": "late_tool"}')
    assert reply.text == "tool results: added late_tool"
    await eventually(
        lambda: "late_tool" in [t.name for t in connection["toolbox"].tools], "the new listing"
    )

    reply = await send(gateway, "call late_tool")
    assert reply.text == "tool results: late_tool was added at runtime"
    assert "toolbox__late_tool" in offered(fake_openai, -2)


async def test_names_that_collide_after_sanitising_are_reported(
    pool_gateway: PoolGateway, fake_openai: FakeOpenAI
) -> None:
    servers = {
        "tb.x": toolbox_spec(MARKER, tools=["echo"]),
        "tb_x": toolbox_spec(MARKER, tools=["echo"]),
    }
    gateway = await pool_gateway("ok-primary", servers=servers)

    await send(gateway, "hello")

    assert offered(fake_openai) == ["tb_x__echo"]
    (line,) = gateway.mcp_pool.collisions
    assert "'echo' of MCP server 'tb_x'" in line and "MCP server 'tb.x'" in line


# --- failures: crash, missing command, backoff -------------------------------------------


async def test_crashed_server_is_restarted_with_backoff(
    pool_gateway: PoolGateway, pid_file: Path
) -> None:
    gateway = await pool_gateway("tool-primary", mcp={"backoff_initial_s": 0.3})
    connection = gateway.mcp_pool.connections["toolbox"]
    backoffs: list[float | None] = []

    def restarted(count: int) -> Callable[[], bool]:
        def check() -> bool:
            if connection.state is ServerState.BACKOFF and len(backoffs) < count:
                backoffs.append(connection.backoff_s)
            return connection.restarts == count and connection.state is ServerState.READY

        return check

    reply = await send(gateway, "call crash")  # the process exits mid-call
    assert reply.result is not None and not reply.result["failed"]
    assert reply.text.startswith("tool results: error: MCP server 'toolbox'")
    await eventually(restarted(1), "restart 1")
    first, second = pids(pid_file)
    assert not alive(first)

    os.kill(second, signal.SIGKILL)  # killed from outside this time
    await eventually(restarted(2), "restart 2")
    assert len(set(pids(pid_file))) == 3
    assert (await send(gateway, 'call add {"a": 3, "b": 4}')).text == "tool results: 7"

    # Up for less than healthy_after_s (60 s) between the crashes: the wait doubled.
    assert backoffs == [0.3, 0.6]
    assert [state for _, state in connection.history] == [
        ServerState.IDLE,
        ServerState.STARTING,
        ServerState.READY,
        ServerState.BACKOFF,
        ServerState.STARTING,
        ServerState.READY,
        ServerState.BACKOFF,
        ServerState.STARTING,
        ServerState.READY,
    ]
    waits = [
        later[0] - moment
        for (moment, state), later in itertools.pairwise(connection.history)
        if state is ServerState.BACKOFF
    ]
    assert waits[0] >= 0.3 and waits[1] >= 0.6
    assert connection.last_error == "the connection closed (the server exited or went away)"


async def test_backoff_resets_after_a_healthy_period(
    pool_gateway: PoolGateway,
) -> None:
    gateway = await pool_gateway(
        "tool-primary", mcp={"backoff_initial_s": 0.3, "healthy_after_s": 0}
    )
    connection = gateway.mcp_pool.connections["toolbox"]
    backoffs = []
    for restart in (1, 2):
        await send(gateway, "call crash")
        await eventually(lambda: connection.state is not ServerState.READY, "the crash")
        backoffs.append(connection.backoff_s)
        await eventually(
            lambda r=restart: connection.restarts == r and connection.state is ServerState.READY,
            f"restart {restart}",
        )

    assert backoffs == [0.3, 0.3]


async def test_a_down_server_is_reported_unavailable_without_blocking(
    pool_gateway: PoolGateway, fake_openai: FakeOpenAI, pid_file: Path
) -> None:
    gateway = await pool_gateway("tool-primary", mcp={"backoff_initial_s": 120})
    connection = gateway.mcp_pool.connections["toolbox"]
    await send(gateway, "call crash")
    await eventually(lambda: connection.state is ServerState.BACKOFF, "backoff")

    fake_openai.clear()
    reply = await send(gateway, 'call echo {"text": "hi"}')

    assert reply.text.startswith(
        "tool results: error: MCP server 'toolbox' is unavailable (backoff, retrying in"
    )
    echo = next(
        t["function"]
        for t in fake_openai.requests[0].tools or []
        if t["function"]["name"] == "toolbox__echo"
    )
    assert echo["description"].startswith(UNAVAILABLE_PREFIX)
    assert reply.result is not None and reply.result["duration_s"] < 60
    assert len(pids(pid_file)) == 1


async def test_missing_command_fails_in_one_line_and_others_keep_serving(
    pool_gateway: PoolGateway,
    fake_openai: FakeOpenAI,
    log_lines: list[str],
) -> None:
    # Not MARKER: it goes to servers' env, and env values are secrets that logs mask.
    missing = f"no-such-command-{uuid.uuid4().hex}"
    gateway = await pool_gateway(
        "tool-primary",
        servers={
            "broken": {"command": missing},
            "toolbox": toolbox_spec(MARKER),
        },
    )

    reply = await send(gateway, 'call echo {"text": "still here"}')
    plain = await send(gateway, "just chat", session_key="other")

    assert reply.text == "tool results: echo: still here"
    assert plain.result is not None and not plain.result["failed"]
    broken = gateway.mcp_pool.connections["broken"]
    assert broken.state is ServerState.FAILED
    assert broken.last_error == f"command not found: '{missing}'"
    assert broken.starts == 1
    about_broken = [line for line in log_lines if "'broken'" in line]
    assert about_broken == [
        f"mcp server 'broken' failed: command not found: '{missing}' (not retried)"
    ]
    assert not any(name.startswith("broken__") for name in offered(fake_openai))


async def test_handshake_timeout_backs_off_and_never_blocks_chat(
    pool_gateway: PoolGateway,
) -> None:
    silent = {
        "command": "python3",
        "args": ["-c", "import time; time.sleep(600)"],
        "env": {"HERMES_MCP_TEST_MARKER": MARKER},
        "startup_timeout_s": 0.5,
    }
    gateway = await pool_gateway(
        "ok-primary", servers={"silent": silent}, mcp={"backoff_initial_s": 60}
    )

    reply = await send(gateway, "hello")

    assert reply.result is not None and not reply.result["failed"]
    connection = gateway.mcp_pool.connections["silent"]
    assert connection.state is ServerState.BACKOFF
    assert connection.last_error == "no MCP handshake within 0.5s (startup_timeout_s)"
    assert not marked_processes(MARKER)  # the silent process was killed with its connection


#: In a fresh interpreter, the client SDK's import made slow (as on a busy host, where its
#: seconds of CPU become many), then the first wait for a server that settles at once (its
#: port is closed), with a budget shorter than the import: the state it reached is printed.
SLOW_IMPORT_WAIT = """
import asyncio, importlib.abc, sys, time
from hermes_core.mcp import MCPRegistry
from hermes_core.mcp.pool import MCPPool
from hermes_core.mcp.settings import PoolSettings

class SlowSDK(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "mcp.client.session":
            time.sleep(2)
        return None

async def main():
    sys.meta_path.insert(0, SlowSDK())
    registry = MCPRegistry()
    registry.apply_settings({"refused": {"url": sys.argv[1]}})
    pool = MCPPool()
    pool.configure(registry.specs, PoolSettings())
    pool.start()
    await pool.wait_settled(timeout_s=1)
    print(pool.connections["refused"].state)
    await pool.stop()

asyncio.run(main())
"""


def test_the_first_wait_for_servers_does_not_count_the_sdk_import() -> None:
    # mcp list reported a server still "starting" on a loaded host: the import was in its budget.
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-c", SLOW_IMPORT_WAIT, url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["backoff"], done.stdout


# --- lifecycle and settings ----------------------------------------------------------------


async def test_lazy_by_default_and_eager_on_request(
    pool_gateway: PoolGateway, tmp_path: Path
) -> None:
    lazy_pids, eager_pids = tmp_path / "lazy", tmp_path / "eager"
    lazy = await pool_gateway("ok-primary", servers={"toolbox": toolbox_spec(MARKER, lazy_pids)})
    await pool_gateway(
        "ok-primary", servers={"toolbox": toolbox_spec(MARKER, eager_pids)}, mcp={"eager": True}
    )

    await eventually(lambda: len(pids(eager_pids)) == 1, "the eager start")
    assert lazy.mcp_pool.connections["toolbox"].state is ServerState.IDLE
    assert pids(lazy_pids) == []
    await send(lazy, "hello")
    assert len(pids(lazy_pids)) == 1


async def test_gateway_stop_stops_every_server(pool_gateway: PoolGateway, pid_file: Path) -> None:
    gateway: Gateway = await pool_gateway(
        "tool-primary",
        servers={"a": toolbox_spec(MARKER, pid_file), "b": toolbox_spec(MARKER, pid_file)},
    )
    await send(gateway, 'call sleep {"seconds": 0}')
    started = pids(pid_file)
    assert len(started) == 2 and all(alive(pid) for pid in started)

    await gateway.stop()

    assert not any(alive(pid) for pid in started)
    assert [c.state for c in gateway.mcp_pool.connections.values()] == [ServerState.STOPPED] * 2
    assert await gateway.mcp_pool.tools() == []


async def test_settings_override_a_plugin_spec(
    pool_gateway: PoolGateway,
    fake_openai: FakeOpenAI,
    register_plugin: Callable[..., object],
) -> None:
    class Contributes:
        @hookimpl
        def register_mcp_servers(self, register: Any) -> None:
            register("mine", command="unused-by-the-override")
            register("theirs", **toolbox_spec(MARKER, tools=["add"]))

    register_plugin(Contributes(), "contributes")
    gateway = await pool_gateway(
        "ok-primary", servers={"mine": toolbox_spec(MARKER, tools=["echo"])}
    )

    await send(gateway, "hello")

    rows = {row["name"]: row for row in gateway.mcp_pool.status()}
    assert (rows["mine"]["source"], rows["mine"]["tools"]) == ("settings", ["echo"])
    assert (rows["theirs"]["source"], rows["theirs"]["tools"]) == ("contributes", ["add"])
    assert offered(fake_openai) == ["mine__echo", "theirs__add"]


async def test_disabled_server_is_listed_but_never_started(
    pool_gateway: PoolGateway, pid_file: Path
) -> None:
    gateway = await pool_gateway(
        "ok-primary", servers={"off": toolbox_spec(MARKER, pid_file, enabled=False)}
    )

    await send(gateway, "hello")

    assert gateway.mcp_pool.connections == {}
    assert gateway.mcp_pool.status()[0]["state"] == "disabled"
    assert pids(pid_file) == []


@pytest.mark.parametrize(
    ("mcp", "key"),
    [
        ({"eager": "yes"}, "mcp.eager"),
        ({"backoff_initial_s": 0}, "mcp.backoff_initial_s"),
        ({"colour": 1}, "mcp.colour"),
    ],
)
async def test_bad_pool_settings_stop_startup_naming_the_key(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI, mcp: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await make_gateway(settings_for(fake_openai.url, mcp=mcp, store={"path": ":memory:"}))
    assert str(caught.value).startswith(key)


# --- fixtures used above --------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every message hermes-core logs during the test, WARNING and above."""
    from loguru import logger

    lines: list[str] = []
    logger.enable("hermes_core")
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    yield lines
    logger.remove(sink)
    logger.disable("hermes_core")


# --- pure parts: names and result text -----------------------------------------------------


def test_offered_names_are_sanitised_and_cut_to_64_characters() -> None:
    from hermes_core.mcp.naming import offered_name

    assert offered_name("my.server", "get time!") == "my_server__get_time_"
    long_a, long_b = offered_name("s" * 40, "t" * 40 + "a"), offered_name("s" * 40, "t" * 40 + "b")
    assert len(long_a) == len(long_b) == 64
    assert long_a != long_b  # the hash of the full name keeps them apart
    assert long_a[:55] == long_b[:55] == f"{'s' * 40}__{'t' * 13}"


def test_result_text_describes_non_text_content_and_errors() -> None:
    from mcp_types import CallToolResult, ImageContent, TextContent

    from hermes_core.mcp.results import result_text

    mixed = CallToolResult(
        content=[TextContent(text="chart:"), ImageContent(data="AAAA", mime_type="image/png")]
    )
    failed = CallToolResult(content=[TextContent(text="no such city")], is_error=True)
    structured = CallToolResult(content=[], structured_content={"n": 3})

    assert result_text(mixed) == "chart:\n[image content (image/png)]"
    assert result_text(failed) == "error: no such city"
    assert result_text(structured) == '{"n": 3}'
