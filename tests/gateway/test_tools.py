"""Python tools from ``register_tools``, called by the scripted ``tool-*`` model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hermes_core import hookimpl
from hermes_core.plugins.openai_provider import OpenAIProvider
from hermes_core.providers import Completion, RegisterProvider
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for
from hermes_core.tools import RegisterTool

ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}


class Tools:
    """A plugin with a few tools; records what they were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.spans: list[tuple[float, float]] = []  # (start, end) of each sleeping call

    @hookimpl
    def register_tools(self, register: RegisterTool) -> None:
        register("add", self.add, "Add two numbers.", ADD_SCHEMA)
        register("nap_a", self.nap, "Sleep 0.3 s.")
        register("nap_b", self.nap, "Sleep 0.3 s.")
        register("block_a", self.block, "Sleep 0.3 s, blocking.")
        register("block_b", self.block, "Sleep 0.3 s, blocking.")
        register("explode", self.explode, "Always fails.")

    def add(self, arguments: dict[str, Any]) -> str:
        self.calls.append(("add", arguments))
        return str(arguments["a"] + arguments["b"])

    async def nap(self, arguments: dict[str, Any]) -> str:
        self.calls.append(("nap", arguments))
        start = time.perf_counter()
        await asyncio.sleep(0.3)
        self.spans.append((start, time.perf_counter()))
        return "rested"

    def block(self, arguments: dict[str, Any]) -> str:
        self.calls.append(("block", arguments))
        start = time.perf_counter()
        time.sleep(0.3)  # a plain function doing blocking work, as many real tools do
        self.spans.append((start, time.perf_counter()))
        return "rested"

    def explode(self, arguments: dict[str, Any]) -> str:
        self.calls.append(("explode", arguments))
        raise RuntimeError("kaboom")


async def tool_gateway(make_gateway, fake_openai: FakeOpenAI, register_plugin, **sections: Any):
    tools = Tools()
    register_plugin(tools, "tools")
    gateway = await make_gateway(settings_for(fake_openai.url, "tool-x", **sections))
    return gateway, tools


def tool_results(fake_openai: FakeOpenAI) -> list[str]:
    """The tool messages the model received, in order."""
    return [m["content"] for r in fake_openai.snapshot() for m in r.messages if m["role"] == "tool"]


async def test_a_registered_tool_is_offered_called_and_its_result_fed_back(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    gateway, tools = await tool_gateway(make_gateway, fake_openai, register_plugin)
    reply = await send(gateway, 'call add {"a": 2, "b": 40}')

    assert tools.calls == [("add", {"a": 2, "b": 40})]
    assert reply.text == "tool results: 42"
    first, second = fake_openai.snapshot()
    offered = {tool["function"]["name"]: tool["function"] for tool in first.tools or []}
    assert offered["add"]["parameters"] == ADD_SCHEMA
    assert offered["add"]["description"] == "Add two numbers."
    assert second.messages[-1]["role"] == "tool"
    assert reply.result is not None
    assert reply.result["tool_calls"] == 1 and reply.result["api_calls"] == 2

    # The tool exchange is part of the history: the next run sends it along.
    fake_openai.clear()
    await send(gateway, "thanks")
    roles = [m["role"] for m in fake_openai.snapshot()[0].messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]


async def test_pre_tool_call_can_replace_the_call(
    make_gateway, fake_openai: FakeOpenAI, register_plugin, hook_recorder: HookRecorder
) -> None:
    class Cached:
        @hookimpl
        def pre_tool_call(self, tool: str, arguments: dict[str, Any]) -> Any:
            return {"cached": arguments["a"]} if tool == "add" else None

    register_plugin(Cached())
    gateway, tools = await tool_gateway(make_gateway, fake_openai, register_plugin)
    reply = await send(gateway, 'call add {"a": 1, "b": 1}')

    assert tools.calls == [], "a replaced call must not run the tool"
    assert reply.text == 'tool results: {"cached": 1}'
    (post,) = hook_recorder.of("post_tool_call")
    assert (post["tool"], post["arguments"], post["result"]) == (
        "add",
        {"a": 1, "b": 1},
        '{"cached": 1}',
    )


async def test_post_tool_call_sees_the_result(
    make_gateway, fake_openai: FakeOpenAI, register_plugin, hook_recorder: HookRecorder
) -> None:
    gateway, _ = await tool_gateway(make_gateway, fake_openai, register_plugin)
    await send(gateway, 'call add {"a": 3, "b": 4}')
    (pre,) = hook_recorder.of("pre_tool_call")
    (post,) = hook_recorder.of("post_tool_call")
    assert pre["tool"] == post["tool"] == "add"
    assert post["result"] == "7"
    assert post["session"].key == "test:1"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nap", "block"])
async def test_tool_calls_of_one_response_run_concurrently(
    make_gateway, fake_openai: FakeOpenAI, register_plugin, kind: str
) -> None:
    gateway, tools = await tool_gateway(make_gateway, fake_openai, register_plugin)
    reply = await send(gateway, f"call-many {kind}_a {kind}_b")

    assert reply.text == "tool results: rested | rested"
    assert reply.result is not None and reply.result["tool_calls"] == 2
    assert len(tools.spans) == 2
    # Timed from the first call's start to the last one's end, HTTP round trips excluded.
    elapsed = max(end for _, end in tools.spans) - min(start for start, _ in tools.spans)
    assert elapsed < 0.55, f"two 0.3 s tools took {elapsed:.2f} s: not concurrent"


async def test_a_raising_tool_gives_the_model_an_error(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    gateway, _ = await tool_gateway(make_gateway, fake_openai, register_plugin)
    reply = await send(gateway, "call explode {}")
    assert reply.result is not None
    assert reply.result["failed"] is False
    assert reply.result["tool_calls"] == 1
    (result,) = tool_results(fake_openai)
    assert result.startswith("error:") and "kaboom" in result
    assert reply.text == f"tool results: {result}"


async def test_invalid_json_arguments_give_the_model_an_error(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    tools = Tools()
    register_plugin(tools, "tools")
    gateway = await make_gateway(settings_for(fake_openai.url, "badtool-x"))
    reply = await send(gateway, 'call add {"a": 1, "b": 2}')
    assert tools.calls == []
    (result,) = tool_results(fake_openai)
    assert result.startswith("error:") and "invalid arguments" in result
    assert reply.result is not None and reply.result["failed"] is False


async def test_an_unknown_tool_gives_the_model_an_error(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    gateway, tools = await tool_gateway(make_gateway, fake_openai, register_plugin)
    reply = await send(gateway, "call no_such_tool {}")
    (result,) = tool_results(fake_openai)
    assert result.startswith("error:") and "unknown tool 'no_such_tool'" in result
    assert tools.calls == []
    assert reply.result is not None and reply.result["failed"] is False


class ForgetfulProvider(OpenAIProvider):
    """Sends only the user turns, so the scripted ``tool-*`` model asks for the tool again
    after every result: a model that never stops calling tools, over real HTTP."""

    async def complete(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        **params: Any,
    ) -> Completion:
        user_turns = [m for m in messages if m["role"] == "user"]
        return await super().complete(model, user_turns, tools, **params)


async def test_max_tool_rounds_bounds_a_model_that_keeps_calling(
    make_gateway, fake_openai: FakeOpenAI, register_plugin
) -> None:
    class Forgetful:
        @hookimpl
        def register_providers(self, register: RegisterProvider) -> None:
            register("forgetful", ForgetfulProvider)

    register_plugin(Forgetful())
    tools = Tools()
    register_plugin(tools, "tools")
    settings = settings_for(fake_openai.url, agent={"max_tool_rounds": 2})
    settings["agent"]["model"] = "loop:tool-x"
    settings["providers"]["loop"] = {"type": "forgetful", "base_url": fake_openai.url}
    gateway = await make_gateway(settings)

    reply = await send(gateway, 'call add {"a": 1, "b": 1}')
    assert reply.result is not None
    assert reply.result["failed"] is True
    assert reply.result["error_kind"] == "tool"
    assert "max_tool_rounds" in (reply.result["error"] or "")
    assert len(tools.calls) == 2
    assert reply.result["tool_calls"] == 2
    assert reply.result["api_calls"] == 3
    assert len(fake_openai.snapshot()) == 3
    # A failed run adds nothing, tool exchanges included.
    assert gateway.cache.get("test:1").history == []
