"""The malformed-LLM matrix: what a broken or confused model endpoint costs a conversation.

A completion that cannot be used (not JSON, no choices, an empty message, an HTML error page, a
body cut short) fails the run cleanly: a complete RunResult with ``failed`` set and an
``error_kind``, the user's message kept in the transcript but out of the history, so the next
message of the same session, once ``/model`` picks a working model, goes through as if the bad
one never happened. A tool call the agent cannot make (arguments that are not JSON or not an
object, a tool that does not exist) is not a failure: the model gets an error text as the
tool's result and the run goes on. Transcripts are kept in a real SQLite file.

``tests/test_retries.py`` checks the classification of ``garbage-*`` and ``nochoices-*``, and
``tests/test_tools.py`` the error texts of bad tool calls; here each is followed to the store
and to the next message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_retries import assert_complete

from hermes_core import hookimpl
from hermes_core.gateway import Gateway
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.testing import FakeOpenAI, send, settings_for
from hermes_core.tools import RegisterTool

MakeGateway = Callable[..., Awaitable[Gateway]]
SESSION = "test:1"


@dataclass(frozen=True)
class Broken:
    """A scripted model whose completion cannot be used, and what the run must report."""

    model: str
    kind: str
    says: str


BROKEN = [
    Broken("garbage-x", "server", "malformed response from local:garbage-x: Expecting value"),
    Broken("nochoices-x", "server", "malformed response from local:nochoices-x: no choices"),
    Broken("empty-x", "server", "malformed response from local:empty-x: empty message"),
    Broken("html-x", "server", "malformed response from local:html-x: not JSON: '<html>"),
    Broken("truncated-x", "connection", "failed: the response was cut short"),
]


class Echo:
    """A plugin with one tool, ``echo``; records the arguments of every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def register_tools(self, register: RegisterTool) -> None:
        register("echo", self.echo, "Say the text back.")

    def echo(self, arguments: dict[str, Any]) -> str:
        self.calls.append(arguments)
        return f"echo: {arguments.get('text', '')}"


async def gateway_for(make_gateway: MakeGateway, url: str, model: str, tmp_path: Path) -> Gateway:
    return await make_gateway(settings_for(url, model), SQLiteStore(tmp_path / "sessions.db"))


async def switch_to_a_working_model(gateway: Gateway) -> None:
    reply = await send(gateway, "/model local:ok-primary", SESSION)
    assert reply.text == "Model set to local:ok-primary for this session."


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: b.model)
async def test_an_unusable_completion_fails_the_run_and_costs_nothing_after(
    broken: Broken,
    make_gateway: MakeGateway,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    gateway = await gateway_for(make_gateway, fake_openai.url, broken.model, tmp_path)

    failed = assert_complete((await send(gateway, "hello", SESSION)).result)
    await switch_to_a_working_model(gateway)
    after = assert_complete((await send(gateway, "again", SESSION)).result)

    assert failed["failed"] is True
    assert failed["error_kind"] == broken.kind
    assert broken.says in (failed["error"] or "")
    assert (
        failed["final_response"] == f"Sorry, the request failed ({broken.kind}): {failed['error']}"
    )
    assert failed["model"] == f"local:{broken.model}"
    assert failed["api_calls"] == 1  # max_retries = 0: one request, no hidden retry
    # The failed message never reached the history: the model sees one user message.
    assert after["failed"] is False
    assert after["final_response"] == "[ok-primary] again (user messages: 1)"
    session = await gateway.session(SESSION, "test")
    transcript = [(line.message, line.status) for line in await gateway.store.transcript(SESSION)]
    assert transcript == [
        ({"role": "user", "content": "hello"}, "failed"),
        ({"role": "user", "content": "again"}, "answered"),
        ({"role": "assistant", "content": after["final_response"]}, "answered"),
    ]
    assert [m["content"] for m in await gateway.store.history(session, 10)] == [
        "again",
        after["final_response"],
    ]


@pytest.mark.parametrize(
    ("model", "text", "fed_back", "echo_calls"),
    [
        pytest.param(
            "badtool-x",
            'call echo {"text": "hi"}',
            ["error: invalid arguments for tool 'echo': Expecting property name"],
            [],
            id="arguments not JSON",
        ),
        pytest.param(
            "tool-x",
            "call echo [1, 2]",
            ["error: invalid arguments for tool 'echo': arguments must be a JSON object"],
            [],
            id="arguments a list",
        ),
        pytest.param(
            "tool-x",
            "call echo null",
            ["error: invalid arguments for tool 'echo': arguments must be a JSON object"],
            [],
            id="arguments null",
        ),
        pytest.param(
            "tool-x", "call nosuch {}", ["error: unknown tool 'nosuch'"], [], id="unknown tool"
        ),
        pytest.param(
            "tool-x",
            "call-many nosuch echo",
            ["error: unknown tool 'nosuch'", "echo: "],
            [{}],
            id="unknown tool beside a known one",
        ),
    ],
)
async def test_a_bad_tool_call_is_an_error_for_the_model_and_the_run_goes_on(
    model: str,
    text: str,
    fed_back: list[str],
    echo_calls: list[dict[str, Any]],
    make_gateway: MakeGateway,
    fake_openai: FakeOpenAI,
    register_plugin: Callable[..., object],
    tmp_path: Path,
) -> None:
    echo = Echo()
    register_plugin(echo, "echo")
    gateway = await gateway_for(make_gateway, fake_openai.url, model, tmp_path)

    result = assert_complete((await send(gateway, text, SESSION)).result)
    await switch_to_a_working_model(gateway)
    after = assert_complete((await send(gateway, "next", SESSION)).result)

    tool_messages = [m for m in fake_openai.requests[1].messages if m["role"] == "tool"]
    assert len(tool_messages) == len(fed_back)
    for message, expected in zip(tool_messages, fed_back, strict=True):
        assert message["content"].startswith(expected)
    assert echo.calls == echo_calls
    assert result["failed"] is False
    assert result["tool_calls"] == len(fed_back)
    assert result["final_response"] == "tool results: " + " | ".join(
        m["content"] for m in tool_messages
    )
    # The exchange is history, whole and well-formed: the next request carries every tool
    # call with its result, so a strict endpoint would accept it.
    assert after["final_response"] == "[ok-primary] next (user messages: 2)"
    sent = fake_openai.requests[-1].messages
    calls = [call["id"] for m in sent if m.get("tool_calls") for call in m["tool_calls"]]
    assert calls == [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    assert {line.status for line in await gateway.store.transcript(SESSION)} == {"answered"}
