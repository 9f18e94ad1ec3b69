"""MCP beyond tool calls, against a real stdio server (tests/mcp_servers/capabilities_server.py)
through a real gateway and the scripted OpenAI upstream: tool-list changes, task-only tools,
roots, resources and prompts, sampling, elicitation."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers_console import piped_console
from mcp_servers.helpers import MARKER_ENV, eventually

from hermes_core.mcp.listing import TASK_REQUIRED
from hermes_core.plugins.console import ConsolePlatform
from hermes_core.testing import FakeOpenAI, send, settings_for

SERVERS = Path(__file__).resolve().parents[1] / "mcp_servers"
CAPABILITIES = SERVERS / "capabilities_server.py"
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
MARKER = f"test-mcp-capabilities-{uuid.uuid4().hex}"
PROVIDER_TIMEOUT_S = 60


pytestmark = pytest.mark.usefixtures("no_leaked_servers")


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


def mcp_test(tmp_path: Path, extra_keys: str = "") -> subprocess.CompletedProcess[str]:
    """``hermes-core mcp test caps`` with the server's settings plus ``extra_keys`` (TOML)."""
    path = tmp_path / "settings.toml"
    args = ", ".join(f'"{arg}"' for arg in server_spec()["args"])
    path.write_text(
        f'[mcp.servers.caps]\ncommand = "{sys.executable}"\nargs = [{args}]\n'
        f'env = {{ {MARKER_ENV} = "{MARKER}" }}\n{extra_keys}'
    )
    return subprocess.run(
        [HERMES_CORE, "mcp", "test", "caps", "--settings", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    result = mcp_test(tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"  background {TASK_REQUIRED}" in result.stdout
    assert "  summarize: Ask the client's model" in result.stdout


# --- roots -----------------------------------------------------------------------------


async def test_configured_roots_are_what_the_server_sees(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    roots = [str(project), "file:///srv/shared%20docs"]
    gateway = await make_gateway(settings(fake_openai, "tool-primary", roots=roots))

    reply = await send(gateway, "call roots")

    seen = json.loads(reply.text.removeprefix("tool results: "))
    assert seen == [
        {"uri": project.as_uri(), "name": "project"},
        {"uri": "file:///srv/shared%20docs", "name": "shared docs"},
    ]


async def test_without_roots_the_client_declares_none(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary"))

    reply = await send(gateway, "call roots")

    assert reply.text.startswith("tool results: error: ")
    assert "roots" in reply.text.lower()


# --- sampling --------------------------------------------------------------------------


async def test_sampling_is_answered_by_the_configured_chain_with_fallback(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    sampling = {"enabled": True, "models": ["local:error500-s", "local:ok-sampler"]}
    gateway = await make_gateway(settings(fake_openai, "tool-primary", sampling=sampling))

    reply = await send(gateway, 'call summarize {"text": "a long story"}')

    assert reply.text == (
        "tool results: sampled by local:ok-sampler: [ok-sampler] a long story (user messages: 1)"
    )
    sampled = fake_openai.requests_for("ok-sampler")[0]
    assert sampled.messages[0] == {"role": "system", "content": "Summarize."}
    assert fake_openai.requests_for("error500-s")  # tried first, failed over


async def test_sampling_uses_the_gateway_chain_and_is_rate_limited(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    sampling = {"enabled": True, "max_per_minute": 1}
    gateway = await make_gateway(settings(fake_openai, "tool-primary", sampling=sampling))

    first = await send(gateway, 'call summarize {"text": "one"}')
    second = await send(gateway, 'call summarize {"text": "two"}')

    assert first.text.startswith("tool results: sampled by local:tool-primary: ")
    assert "more than 1 requests a minute" in second.text
    assert "mcp.servers.caps.sampling.max_per_minute" in second.text


async def test_sampling_is_off_by_default(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary"))

    reply = await send(gateway, 'call summarize {"text": "one"}')

    assert reply.text.startswith("tool results: error: ")
    assert "sampled by" not in reply.text
    assert len(fake_openai.requests) == 2  # the run's two requests, no sampling


# --- elicitation -----------------------------------------------------------------------


async def test_console_user_answers_the_servers_question(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary"))
    out = io.StringIO()
    stdin = io.StringIO('call confirm {"question": "Deploy to prod?"}\nyes, go\n')
    console = ConsolePlatform(gateway, {}, stdin=stdin, stdout=out)
    await console.start()
    await asyncio.wait_for(console.wait_closed(), 60)
    await console.stop()

    lines = out.getvalue().splitlines()
    assert "MCP server 'caps' asks: Deploy to prod?" in lines[1]
    assert lines[-1].endswith("tool results: accept: yes, go")
    assert len(fake_openai.requests) == 2  # the answer line was not taken for a message
    assert "question expired" not in out.getvalue()


async def test_platform_that_cannot_ask_declines_and_the_model_is_told(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary"))

    reply = await send(gateway, 'call confirm {"question": "Deploy?"}')

    assert reply.text == (
        "tool results: decline: None\n[hermes-core: MCP server 'caps' asked the user for "
        "input; platform 'test' cannot ask the user, so it was declined]"
    )


async def test_unanswered_question_is_cancelled_and_a_late_answer_is_the_next_message(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(
        settings(fake_openai, "tool-primary", elicitation={"timeout_s": 0.5})
    )
    async with piped_console(gateway) as piped:
        piped.type('call confirm {"question": "Anyone there?"}\n')
        await eventually(lambda: "question expired" in piped.out.getvalue(), "the notice")
        piped.type("yes\n")  # the answer, typed after the notice
        await eventually(lambda: len(fake_openai.requests) == 4, "the late line's run")
        piped.writer.close()
        await asyncio.wait_for(piped.console.wait_closed(), 30)

    lines = piped.out.getvalue().splitlines()
    question = lines.index("MCP server 'caps' asks: Anyone there?")
    assert lines[question + 1 : question + 5] == [
        "answer (Answer): ",
        "(the question expired: MCP server 'caps' stopped waiting for an answer; your next "
        "line is a new message)",
        "tool results: cancel: None",
        "[hermes-core: MCP server 'caps' asked the user for input; the user did not answer "
        "within 0.5s, so it was cancelled]",
    ]
    # As the notice said: the late line is a message of its own, sent to the model, not lost.
    assert [m["content"] for m in fake_openai.requests[2].messages if m["role"] == "user"] == [
        'call confirm {"question": "Anyone there?"}',
        "yes",
    ]
    assert lines[question + 5].startswith("tool results: ")  # the late line's own reply
    assert piped.out.getvalue().count("question expired") == 1


def test_mcp_test_shows_the_capabilities_the_client_declares(tmp_path: Path) -> None:
    result = mcp_test(
        tmp_path,
        f'roots = ["{tmp_path}"]\n'
        "sampling = { enabled = true }\nelicitation = { enabled = false }\n",
    )
    assert result.returncode == 0, result.stderr
    assert "; capabilities: sampling, roots (listChanged)\n" in result.stdout
    assert "server: capabilities " in result.stdout


# --- resources -------------------------------------------------------------------------


async def test_resource_tool_lists_reads_and_follows_links(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary"))

    listing = await send(gateway, "call caps__resources")
    link = await send(gateway, "call linked")
    read = await send(gateway, 'call caps__resources {"uri": "note://readme"}')

    assert "caps__resources" in offered(fake_openai)
    assert listing.text == (
        "tool results: note://readme (readme, text/plain)\nnote://big (big, text/plain)"
    )
    assert link.text == (
        "tool results: [resource link note://readme (readme, text/plain); read it with tool "
        'caps__resources {"uri": "note://readme"}]'
    )
    assert read.text == "tool results: hermes-core reads resources through a built-in tool."


async def test_resource_text_is_cut_at_the_setting(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary", resource_max_chars=100))

    reply = await send(gateway, 'call caps__resources {"uri": "note://big"}')

    assert reply.text == (
        "tool results: " + "x" * 100 + "\n[cut at 100 of 10000 characters (resource_max_chars)]"
    )


async def test_resources_switched_off_offer_no_tool_and_links_no_hint(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "tool-primary", resources=False))

    reply = await send(gateway, "call linked")

    assert "caps__resources" not in offered(fake_openai)
    assert reply.text == "tool results: [resource link note://readme (readme, text/plain)]"


# --- prompts ---------------------------------------------------------------------------


async def test_prompt_command_lists_and_runs_a_prompt(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "ok-primary"))

    listing = await send(gateway, "/prompt")
    ran = await send(gateway, '/prompt caps.greet "Ann Lee" mood=grumpy')

    assert listing.text == "/prompt caps.greet name [mood]: Greet someone."
    assert ran.text == "[ok-primary] Write a grumpy greeting for Ann Lee. (user messages: 1)"
    assert fake_openai.requests[-1].messages[-1] == {
        "role": "user",
        "content": "Write a grumpy greeting for Ann Lee.",
    }


async def test_prompt_command_names_what_is_wrong(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "ok-primary"))

    missing = await send(gateway, "/prompt caps.greet")
    unknown = await send(gateway, "/prompt caps.nope")
    no_server = await send(gateway, "/prompt other.greet")

    assert missing.text == "/prompt caps.greet: missing argument(s): name"
    assert unknown.text == (
        "/prompt caps.nope: MCP server 'caps' has no prompt 'nope' (known: greet)"
    )
    assert no_server.text == "Usage: /prompt <server>.<name> args… (MCP servers: caps)"
    assert not fake_openai.requests  # nothing was run


async def test_prompts_switched_off_are_not_offered(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "ok-primary", prompts=False))

    listing = await send(gateway, "/prompt")
    ran = await send(gateway, "/prompt caps.greet Ann")

    assert listing.text == "No MCP server offers prompts."
    assert ran.text == "/prompt caps.greet: MCP server 'caps' has no prompt 'greet' (known: none)"


# --- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ('roots = ["https://example.com/x"]', "mcp.servers.caps.roots: expected a path or a file"),
        (
            "sampling = { enabled = true, max_per_minute = 0 }",
            "mcp.servers.caps.sampling.max_per_minute: must be >= 1, got 0",
        ),
        ('sampling = { models = ["nocolon"] }', "mcp.servers.caps.sampling.models: expected"),
        ("elicitation = { timeout_s = 0 }", "mcp.servers.caps.elicitation.timeout_s: must be > 0"),
        ("resource_max_chars = 10", "mcp.servers.caps.resource_max_chars: must be >= 100"),
        ("prompts = 1", "mcp.servers.caps.prompts: wrong type"),
    ],
)
def test_config_check_names_a_bad_capability_key(tmp_path: Path, keys: str, problem: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        '[agent]\nmodel = "local:m"\n[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\n'
        f'[mcp.servers.caps]\ncommand = "x"\n{keys}\n'
    )
    result = subprocess.run(
        [HERMES_CORE, "config", "check", "--settings", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert problem in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_allowlist_offers_the_resource_tool_only_when_it_names_it(
    make_gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings(fake_openai, "ok-primary", tools=["linked"]))
    await send(gateway, "hello")
    assert offered(fake_openai) == ["caps__linked"]
    await gateway.stop()

    gateway = await make_gateway(settings(fake_openai, "ok-primary", tools=["linked", "resources"]))
    await send(gateway, "hello")
    assert offered(fake_openai) == ["caps__linked", "caps__resources"]
