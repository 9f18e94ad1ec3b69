"""MCP beyond tool calls, against a real stdio server (tests/mcp_servers/capabilities_server.py)
through a real gateway and the scripted OpenAI upstream: tool-list changes, task-only tools,
roots, resources and prompts, sampling, elicitation."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_servers.helpers import MARKER_ENV, marked_processes, wait_until

from hermes_core.mcp.listing import TASK_REQUIRED
from hermes_core.testing import FakeOpenAI, send, settings_for

SERVERS = Path(__file__).resolve().parents[1] / "mcp_servers"
CAPABILITIES = SERVERS / "capabilities_server.py"
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
MARKER = f"test-mcp-capabilities-{uuid.uuid4().hex}"
PROVIDER_TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def no_leaked_servers() -> Iterator[None]:
    yield
    wait_until(lambda: not marked_processes(MARKER), "MCP servers to be gone", timeout_s=10)


def server_spec(**keys: Any) -> dict[str, Any]:
    """``mcp.servers.caps``: the capabilities server over stdio."""
    return {
        "command": sys.executable,
        "args": [str(CAPABILITIES)],
        "env": {MARKER_ENV: MARKER},
        **keys,
    }


def settings(fake_openai: FakeOpenAI, model: str, **server: Any) -> dict[str, Any]:
    mcp = {"servers": {"caps": server_spec(**server)}}
    result = settings_for(fake_openai.url, model, mcp=mcp, store={"path": ":memory:"})
    result["providers"]["local"]["timeout_s"] = PROVIDER_TIMEOUT_S
    return result


def offered(fake_openai: FakeOpenAI, index: int = -1) -> list[str]:
    tools = fake_openai.requests[index].tools or []
    return [tool["function"]["name"] for tool in tools]


# --- tools/list_changed ----------------------------------------------------------------


async def test_tool_added_by_a_call_is_offered_by_the_very_next_run(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary"))

    reply = await send(gateway, 'call grow {"name": "late_tool"}')
    assert reply.text == "tool results: added late_tool"
    # No waiting here: the server takes 1.5 s to list again, and the next run waits for it.
    reply = await send(gateway, "call late_tool")

    assert "caps__late_tool" in offered(fake_openai, -2)
    assert reply.text == "tool results: late_tool was added at runtime"


# --- tasks -----------------------------------------------------------------------------


async def test_task_only_tool_is_not_offered_and_said_so_once(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "ok-primary"))

    await send(gateway, "hello")
    await send(gateway, "again")

    names = offered(fake_openai)
    assert "caps__summarize" in names and "caps__background" not in names
    connection = gateway.mcp_pool.connections["caps"]
    assert connection.not_offered == {"background": TASK_REQUIRED}


def test_mcp_test_names_the_task_only_tool(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    args = ", ".join(f'"{arg}"' for arg in server_spec()["args"])
    path.write_text(
        f'[mcp.servers.caps]\ncommand = "{sys.executable}"\nargs = [{args}]\n'
        f'env = {{ {MARKER_ENV} = "{MARKER}" }}\n'
    )
    result = subprocess.run(
        [HERMES_CORE, "mcp", "test", "caps", "--settings", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"  background {TASK_REQUIRED}" in result.stdout
    assert "  summarize: Ask the client's model" in result.stdout
