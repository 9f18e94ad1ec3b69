"""``gateway.stream(message)``: a run's typed events, in order, against the scripted server."""

from __future__ import annotations

import itertools
import re
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from hermes_core import hookimpl
from hermes_core.events import (
    Fallback,
    RunEvent,
    RunFinished,
    RunStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from hermes_core.gateway import Gateway
from hermes_core.testing import FakeOpenAI, message, send, settings_for


class Stamp:
    @hookimpl
    def register_tools(self, register: Any) -> None:
        register("stamp", lambda arguments: f"stamped {arguments.get('n')}", "Stamp a number.")


async def events_of(gateway: Gateway, text: str, key: str = "test:1") -> list[RunEvent]:
    return [event async for event in gateway.stream(message(text, key))]


def text_of(events: list[RunEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_a_run_streams_its_start_text_and_result(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway()
    events = await events_of(gateway, "hello")
    assert events[0] == RunStarted("test:1", "local:ok-primary")
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.reply.result is not None
    assert not finished.reply.failed
    assert text_of(events) == finished.reply.text == "[ok-primary] hello (user messages: 1)"
    assert sum(isinstance(event, RunFinished) for event in events) == 1


async def test_tool_calls_and_fallbacks_are_events_before_the_answer(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    register_plugin(Stamp(), "stamp")
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary", ["tool-fb"]))
    events = await events_of(gateway, 'call stamp {"n": 3}')
    kinds = [type(event).__name__ for event in events]
    kinds = [k for i, k in enumerate(kinds) if k != "TextDelta" or kinds[i - 1] != k]
    assert kinds == [
        "RunStarted",
        "Fallback",
        "UsageReported",
        "ToolCallStarted",
        "ToolCallFinished",
        "TextDelta",
        "UsageReported",
        "RunFinished",
    ]
    fallback, started, finished = (
        next(e for e in events if isinstance(e, kind))
        for kind in (Fallback, ToolCallStarted, ToolCallFinished)
    )
    assert isinstance(fallback, Fallback)
    assert (fallback.from_model, fallback.to_model) == ("local:bad-primary", "local:tool-fb")
    assert isinstance(started, ToolCallStarted) and started.tool == "stamp"
    assert isinstance(finished, ToolCallFinished) and finished.call_id == started.call_id
    assert finished.result == "stamped 3" and finished.duration_s >= 0
    assert text_of(events) == "tool results: stamped 3"


async def test_a_command_or_a_refusal_streams_its_whole_reply_once(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    events = await events_of(gateway, "/help")
    assert [type(event) for event in events] == [TextDelta, RunFinished]
    last = events[-1]
    assert isinstance(last, RunFinished) and last.reply.command == "/help"
    assert text_of(events) == last.reply.text

    failed = await events_of(gateway, "fails")
    end = failed[-1]
    assert isinstance(end, RunFinished) and end.reply.failed
    assert text_of(failed) == end.reply.text  # the failure's explanation, once


@pytest.mark.slow
async def test_a_consumer_that_stops_early_loses_nothing(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "slow-0.3-model"))
    stream = gateway.stream(message("first"))
    assert isinstance(await anext(stream), RunStarted)
    await stream.aclose()  # the client went away mid-run
    reply = await send(gateway, "second")
    assert reply.text == "[slow-0.3-model] second (user messages: 2)"


def streaming_example() -> types.ModuleType:
    """The edit-one-message platform of docs/streaming.md, loaded as a module."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "streaming.md").read_text()
    [code] = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "@hookimpl" in block
    ]
    module = types.ModuleType("docs_streaming_example")
    sys.modules[module.__name__] = module
    exec(compile(code, "docs/streaming.md", "exec"), module.__dict__)
    return module


class Board:
    """An in-memory chat (a real one cannot run here): messages by id, and every change."""

    def __init__(self) -> None:
        self.messages: dict[int, str] = {}
        self.changes: list[tuple[str, int, float]] = []

    async def send(self, text: str) -> int:
        message_id = len(self.messages) + 1
        self.messages[message_id] = text
        self.changes.append(("send", message_id, time.monotonic()))
        return message_id

    async def edit(self, message_id: int, text: str) -> None:
        self.messages[message_id] = text
        self.changes.append(("edit", message_id, time.monotonic()))


@pytest.mark.slow
async def test_the_documented_edit_one_message_platform_shows_each_reply_once(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    example = streaming_example()
    gateway = await make_gateway(settings_for(fake_openai.url, "stream-10-150-model"))
    platform = example.EditingPlatform(gateway, {})
    platform.chat = board = Board()

    await platform.on_message("ann", "tell me")
    await platform.on_message("ann", "/help")

    assert list(board.messages.values()) == [
        "[stream-10-150-model] tell me (user messages: 1)",
        (await send(gateway, "/help", "editing:ann")).text,
    ]
    assert [kind for kind, _, _ in board.changes].count("send") == 2  # one message a reply
    edits = [at for kind, message_id, at in board.changes if message_id == 1]
    assert len(edits) >= 3  # the first reply grew while it streamed...
    # ...edited no more often than the chat allows, but for the final text.
    gaps = [later - earlier for earlier, later in itertools.pairwise(edits)]
    assert all(gap >= example.EDIT_EVERY_S - 0.01 for gap in gaps[:-1]), gaps


@pytest.mark.slow
async def test_text_reaches_the_listener_while_the_upstream_is_still_streaming(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "stream-10-100-model"))
    started = time.monotonic()
    arrivals: list[float] = []
    reply = None
    async for event in gateway.stream(message("hello")):
        if isinstance(event, TextDelta):
            arrivals.append(time.monotonic() - started)
        elif isinstance(event, RunFinished):
            reply = event.reply
    assert reply is not None and not reply.failed
    assert len(arrivals) >= 10
    # The upstream takes about a second; the first piece came long before that.
    assert arrivals[0] < 0.5 < arrivals[-1]
    assert reply.result is not None and reply.result["usage"] is not None
    usage = reply.result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.slow
async def test_a_stream_that_fails_after_text_was_shown_neither_falls_back_nor_enters_history(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    settings = settings_for(fake_openai.url, "stall-2-model", ["ok-fallback"])
    settings["providers"]["local"]["stall_timeout_s"] = 0.5
    gateway = await make_gateway(settings)
    events = await events_of(gateway, "hello")
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.reply.result is not None
    result = finished.reply.result
    assert (result["failed"], result["error_kind"], result["fallback_used"]) == (
        True,
        "timeout",
        False,
    )
    assert not fake_openai.requests_for("ok-fallback")  # output had reached the user
    shown = text_of(events)
    assert shown == finished.reply.text and shown.startswith("[stall-2-model] ")
    assert "timeout" in shown  # the partial text, then why it stopped
    reply = await send(gateway, "/model local:ok-fallback")
    assert reply.command == "/model"
    after = await send(gateway, "again")
    assert after.text == "[ok-fallback] again (user messages: 1)"  # nothing of it in history
