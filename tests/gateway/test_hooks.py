"""One behavioural test per hook of ``HermesSpec``, named ``test_hook_<name>``.

Each test drives a real Gateway against the scripted OpenAI server and asserts what
docs/hooks.md promises for that hook: when it fires, its arguments, what its return value does
and whether its exceptions are isolated. Several implementations are ``async def`` on purpose:
the core awaits whatever an implementation returns. tests/test_docs.py fails when a hook has no
test here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx2
import pytest
from helpers_http import user

from hermes_core import hookimpl
from hermes_core.commands import CommandContext
from hermes_core.errors import ConfigError
from hermes_core.gateway import Gateway
from hermes_core.plugins.http import ERROR_KIND_HEADER
from hermes_core.providers import Completion, ProviderError
from hermes_core.runner import serve
from hermes_core.runs import KEPT_TEXT
from hermes_core.settings import ProviderConfig, config_from_dict
from hermes_core.store import MemoryStore
from hermes_core.testing import FakeOpenAI, HookRecorder, ServeHttp, send, settings_for
from hermes_core.types import Message, RunResult, Session

RESULT_KEYS = set(RunResult.__annotations__)


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after a generous ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Boom:
    """A plugin whose observer and registration hooks all raise."""

    @hookimpl
    def register_platforms(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    def register_commands(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    def register_tools(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    def startup(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    async def shutdown(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    def on_fallback(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    async def post_run(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    def on_evict(self) -> None:
        raise RuntimeError("boom")

    @hookimpl
    def post_tool_call(self) -> None:
        raise RuntimeError("boom")


# --- registration hooks --------------------------------------------------------------------


class EchoPlatform:
    """A platform that sends its configured greeting once, keeps the reply, and closes."""

    instances: ClassVar[list[EchoPlatform]] = []

    def __init__(self, gateway: Gateway, settings: Any) -> None:
        self.gateway, self.settings = gateway, settings
        self.replies: list[str] = []
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        EchoPlatform.instances.append(self)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        inbound = Message(
            text=self.settings["greeting"], platform="echo", session_key="echo:1", user_id="u1"
        )
        self.replies.append((await self.gateway.handle(inbound)).text)
        self._closed.set()

    async def stop(self) -> None:
        if self._task is not None:
            await self._task
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


async def test_hook_register_platforms(
    make_gateway, register_plugin, plugin_host, fake_openai: FakeOpenAI
) -> None:
    class EchoPlugin:
        @hookimpl
        async def register_platforms(self, register: Callable[..., None]) -> None:
            register("echo", EchoPlatform)

    register_plugin(EchoPlugin())
    register_plugin(Boom())  # a raising implementation is logged; the others still register
    EchoPlatform.instances.clear()

    idle = await make_gateway()
    assert {"echo", "console"} <= set(idle.platforms.factories)
    # Not enabled: only the console (the default when nothing else is enabled) would start.
    assert idle.platform_plan.names == ["console"]

    settings = settings_for(
        fake_openai.url, platforms={"echo": {"enabled": True, "greeting": "hi"}}
    )
    gateway = Gateway(config_from_dict(settings), plugin_host, store=MemoryStore())
    assert await asyncio.wait_for(serve(gateway), 30) == 0  # starts, serves, stops the gateway

    [platform] = EchoPlatform.instances
    assert platform.gateway is gateway
    assert platform.settings == {"enabled": True, "greeting": "hi"}
    assert platform.replies == ["[ok-primary] hi (user messages: 1)"]
    assert gateway.platform_plan.names == ["echo"]  # the console stays off


async def test_hook_register_mcp_servers(
    make_gateway, register_plugin, fake_openai: FakeOpenAI
) -> None:
    class TimeServer:
        @hookimpl
        async def register_mcp_servers(self, register: Callable[..., None]) -> None:
            # enabled=False: the spec is registered but no process is ever started.
            register("time", command="uvx", args=["mcp-server-time"], enabled=False)

    register_plugin(TimeServer(), "time-plugin")
    gateway = await make_gateway()
    spec = gateway.mcp.specs["time"]
    assert (spec.command, spec.args, spec.transport) == ("uvx", ("mcp-server-time",), "stdio")
    assert (spec.source, spec.enabled) == ("time-plugin", False)

    # A settings entry of the same name replaces the plugin's spec.
    override = settings_for(
        fake_openai.url, mcp={"servers": {"time": {"command": "my-time", "enabled": False}}}
    )
    gateway = await make_gateway(override)
    spec = gateway.mcp.specs["time"]
    assert (spec.command, spec.args, spec.source) == ("my-time", (), "settings")

    # Two plugins claiming one name stop start-up with an error naming both.
    class OtherTimeServer:
        @hookimpl
        def register_mcp_servers(self, register: Callable[..., None]) -> None:
            register("time", url="http://127.0.0.1:9/mcp", enabled=False)

    register_plugin(OtherTimeServer(), "other-time-plugin")
    with pytest.raises(ConfigError) as raised:
        await make_gateway()
    assert "time-plugin" in str(raised.value)
    assert "other-time-plugin" in str(raised.value)


async def test_hook_register_commands(
    make_gateway, register_plugin, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    async def echo(ctx: CommandContext) -> str:
        return f"echo {ctx.args!r} in {ctx.session.key} from {ctx.message.user_id}"

    class Commands:
        @hookimpl
        async def register_commands(self, register: Callable[..., None]) -> None:
            register("/echo", echo, "repeat the arguments")
            register("/status", lambda ctx: "my status", "a replacement for the built-in")

    register_plugin(Commands())
    register_plugin(Boom())
    gateway = await make_gateway()

    reply = await send(gateway, "/echo  hello there ")
    assert reply.text == "echo 'hello there' in test:1 from tester"
    assert (reply.command, reply.result) == ("/echo", None)
    # Plugins run before the trylast built-ins, so the first registration of /status wins.
    assert (await send(gateway, "/status")).text == "my status"
    help_text = (await send(gateway, "/help")).text
    assert "/echo" in help_text and "repeat the arguments" in help_text
    # Commands bypass pre_run and never reach the LLM.
    assert hook_recorder.of("pre_run") == []
    assert fake_openai.requests == []


class CannedProvider:
    """A provider type that answers from its settings table, without any network."""

    instances: ClassVar[list[CannedProvider]] = []

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name, self.config = name, config
        self.models: list[str] = []
        self.closed = False
        CannedProvider.instances.append(self)

    async def complete(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        **params: Any,
    ) -> Completion:
        self.models.append(model)
        if model == "refuse":
            raise ProviderError("non_retryable", f"{self.name}:{model} refuses")
        return Completion(content=f"{self.config.options['prefix']} {messages[-1]['content']}")

    async def aclose(self) -> None:
        self.closed = True


async def test_hook_register_providers(
    make_gateway, register_plugin, fake_openai: FakeOpenAI
) -> None:
    class Canned:
        @hookimpl
        async def register_providers(self, register: Callable[..., None]) -> None:
            register("canned", CannedProvider)

    register_plugin(Canned())
    CannedProvider.instances.clear()
    settings = settings_for(fake_openai.url, "ok-fallback")
    settings["agent"]["model"] = "mine:any"
    settings["providers"]["mine"] = {"type": "canned", "prefix": "canned says"}

    gateway = await make_gateway(settings)
    reply = await send(gateway, "hi")
    assert reply.text == "canned says hi"
    assert reply.result is not None and reply.result["model"] == "mine:any"
    assert fake_openai.requests == []  # the run used the plugin's provider, not the OpenAI one
    [provider] = CannedProvider.instances
    assert (provider.name, provider.config.type, provider.models) == ("mine", "canned", ["any"])
    await gateway.stop()
    assert provider.closed  # one instance per providers.<name>, closed at shutdown

    # Its ProviderError feeds the usual fallback chain.
    settings["agent"] = {"model": "mine:refuse", "fallbacks": ["local:ok-fallback"]}
    reply = await send(await make_gateway(settings), "again")
    assert reply.text == "[ok-fallback] again (user messages: 1)"

    settings["providers"]["mine"]["type"] = "nope"
    with pytest.raises(ConfigError, match=r"providers\.mine\.type: unknown provider type 'nope'"):
        await make_gateway(settings)


class NoParamsProvider:
    """A provider whose ``complete`` takes no ``**params``: it cannot take a request's
    parameters, however it was made."""

    async def complete(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> Completion:
        return Completion(content="no params")

    async def aclose(self) -> None:
        pass


async def test_hook_register_providers_a_factory_whose_provider_takes_no_params(
    register_plugin, fake_openai: FakeOpenAI, serve_http: ServeHttp
) -> None:
    class Plugin:
        @hookimpl
        def register_providers(self, register: Callable[..., None]) -> None:
            # A function, not the class: only the provider it makes can be checked.
            register("plain", lambda name, config: NoParamsProvider())

    register_plugin(Plugin(), "plain_plugin")
    settings = settings_for(fake_openai.url, fallbacks=["ok-fallback"])
    settings["agent"]["model"] = "mine:any"
    settings["providers"]["mine"] = {"type": "plain"}
    body = {"model": "any", "messages": user("hi"), "temperature": 0.2}

    _, platform = await serve_http(settings)
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        answered = (await http.post("/v1/chat/completions", json=body)).json()
    # The run fell back, parameters and all, instead of failing inside the provider.
    assert answered["model"] == "local:ok-fallback"
    assert answered["choices"][0]["message"]["content"].startswith("[ok-fallback] hi")
    assert fake_openai.requests[-1].body["temperature"] == 0.2

    settings["agent"]["fallbacks"] = []
    _, platform = await serve_http(settings)
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        failed = await http.post("/v1/chat/completions", json=body)
    assert failed.headers[ERROR_KIND_HEADER] == "non_retryable"
    assert failed.json()["choices"][0]["message"]["content"] == (
        "Sorry, the request failed (non_retryable): providers.mine: provider type 'plain' "
        "from plugin 'plain_plugin' cannot be used: NoParamsProvider.complete() does not "
        "accept **params, the request's parameters (temperature, max_tokens...); fix the "
        "plugin, or choose another type"
    )


def add(arguments: dict[str, Any]) -> str:
    return str(arguments["a"] + arguments["b"])


ADD_PARAMETERS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


class AddTool:
    @hookimpl
    def register_tools(self, register: Callable[..., None]) -> None:
        register("add", add, "Add two integers.", ADD_PARAMETERS)


async def test_hook_register_tools(make_gateway, register_plugin, fake_openai: FakeOpenAI) -> None:
    async def shout(arguments: dict[str, Any]) -> str:
        return str(arguments["text"]).upper()

    class Shout:
        @hookimpl
        async def register_tools(self, register: Callable[..., None]) -> None:
            register("shout", shout, "Upper-case a text.")

    register_plugin(AddTool())
    register_plugin(Shout())
    register_plugin(Boom())
    gateway = await make_gateway(settings_for(fake_openai.url, "tool-model"))

    reply = await send(gateway, 'call add {"a": 2, "b": 3}')
    assert reply.text == "tool results: 5"
    assert reply.result is not None
    assert (reply.result["tool_calls"], reply.result["api_calls"]) == (1, 2)
    offered = {tool["function"]["name"]: tool["function"] for tool in fake_openai.requests[0].tools}
    assert offered["add"] == {
        "name": "add",
        "description": "Add two integers.",
        "parameters": ADD_PARAMETERS,
    }
    assert offered["shout"]["parameters"] == {"type": "object", "properties": {}}

    assert (await send(gateway, 'call shout {"text": "hi"}')).text == "tool results: HI"


async def test_hook_startup(make_gateway, register_plugin, fake_openai: FakeOpenAI) -> None:
    seen: list[dict[str, Any]] = []

    class Observer:
        @hookimpl
        async def startup(self, gateway: Gateway) -> None:
            seen.append(
                {
                    "gateway": gateway,
                    "started": gateway.started,
                    "registered": "openai" in gateway.providers.types
                    and "/reset" in gateway.commands.commands,
                    "requests": len(fake_openai.requests),
                }
            )

    register_plugin(Observer())
    register_plugin(Boom())  # raises in startup: logged, start-up carries on
    gateway = await make_gateway()
    assert seen == [{"gateway": gateway, "started": True, "registered": True, "requests": 0}]
    assert (await send(gateway, "hi")).text == "[ok-primary] hi (user messages: 1)"
    assert len(seen) == 1  # once per start, never per message


@pytest.mark.slow
async def test_hook_shutdown(
    make_gateway, register_plugin, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    seen: list[dict[str, Any]] = []
    runs: list[asyncio.Task[Any]] = []

    class Observer:
        @hookimpl
        async def shutdown(self, gateway: Gateway) -> None:
            seen.append({"run_done": runs[0].done(), "agent_cached": "test:1" in gateway.cache})

    register_plugin(Observer())
    register_plugin(Boom())  # raises in shutdown: logged, the stop completes
    gateway = await make_gateway(settings_for(fake_openai.url, "slow-1-model"))
    runs.append(asyncio.create_task(send(gateway, "hi")))
    await eventually(lambda: len(fake_openai.requests) == 1)  # the run is in flight

    await gateway.stop()
    # It fired once, after the run in flight finished and before the cache was emptied.
    assert seen == [{"run_done": True, "agent_cached": True}]
    assert runs[0].result().text == "[slow-1-model] hi (user messages: 1)"
    assert hook_recorder.names()[-3:] == ["post_run", "shutdown", "on_evict"]
    assert hook_recorder.of("on_evict")[-1]["reason"] == "shutdown"


# --- around each run -----------------------------------------------------------------------


async def test_hook_pre_run(
    make_gateway, register_plugin, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    seen: list[tuple[str, str, str, str, str]] = []

    class Gate:
        @hookimpl
        async def pre_run(self, session: Session, message: Message) -> dict[str, Any] | None:
            seen.append(
                (session.key, session.platform, message.text, message.session_key, message.user_id)
            )
            if message.text.startswith("blocked"):
                return {"final_response": f"not now, {message.user_id}"}
            return None

    class Later:
        @hookimpl
        def pre_run(self, message: Message) -> dict[str, Any] | None:
            return {"final_response": "later wins"} if message.text == "blocked twice" else None

    register_plugin(Gate())
    register_plugin(Later())  # registered last, so called first
    gateway = await make_gateway()

    reply = await send(gateway, "blocked")
    assert reply.text == "not now, tester"
    assert reply.result is not None
    assert set(reply.result) == RESULT_KEYS  # missing keys filled with defaults
    assert (reply.result["failed"], reply.result["api_calls"]) == (False, 0)
    assert fake_openai.requests == []  # short-circuited: no LLM request
    assert "test:1" not in gateway.cache  # and no agent was created
    [post_run] = hook_recorder.of("post_run")
    assert post_run["agent"] is None
    assert post_run["result"] == reply.result
    assert seen == [("test:1", "test", "blocked", "test:1", "tester")]

    # The first non-None answer wins: the later registration answered, Gate was not asked.
    assert (await send(gateway, "blocked twice")).text == "later wins"
    assert len(seen) == 1

    # None lets the run proceed; the two answered short-circuits are part of the conversation.
    assert (await send(gateway, "hello")).text == "[ok-primary] hello (user messages: 3)"
    assert [r.model for r in fake_openai.requests] == ["ok-primary"]


class RaisingGate:
    """A ``pre_run`` that raises as it is called."""

    @hookimpl
    def pre_run(self) -> None:
        raise RuntimeError("gate is broken")


class AsyncRaisingGate:
    """A ``pre_run`` whose awaitable raises once the core awaits it."""

    @hookimpl
    async def pre_run(self) -> None:
        raise RuntimeError("gate is broken")


@pytest.mark.parametrize(
    "gate", [RaisingGate, AsyncRaisingGate], ids=["raising when called", "raising when awaited"]
)
async def test_pre_run_exception_fails_the_run_without_an_llm_request(
    make_gateway,
    register_plugin,
    fake_openai: FakeOpenAI,
    hook_recorder: HookRecorder,
    errors_logged: list[str],
    gate: type,
) -> None:
    register_plugin(gate(), "broken-gate")
    gateway = await make_gateway()
    reply = await send(gateway, "hi")
    assert reply.result is not None
    assert (reply.result["failed"], reply.result["error_kind"]) == (True, "internal")
    assert "broken-gate" in str(reply.result["error"])
    assert reply.text.startswith(KEPT_TEXT)
    assert "gate is broken" not in reply.text, "internals stay in the log, not in the reply"
    assert fake_openai.requests == []
    assert [c["result"]["error_kind"] for c in hook_recorder.of("post_run")] == ["internal"]
    assert any("broken-gate" in line and "gate is broken" in line for line in errors_logged)


async def test_hook_on_fallback(
    make_gateway, register_plugin, fake_openai: FakeOpenAI, hook_recorder: HookRecorder
) -> None:
    seen: list[dict[str, Any]] = []

    class Observer:
        @hookimpl
        async def on_fallback(
            self, session: Session, agent: Any, error: str, from_model: str, to_model: str
        ) -> None:
            seen.append(
                {
                    "session": session.key,
                    "agent": agent,
                    "error": error,
                    "from": from_model,
                    "to": to_model,
                }
            )

    register_plugin(Observer())
    register_plugin(Boom())  # raises in on_fallback: logged, the fallback still answers
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary", ["ok-fallback"]))

    reply = await send(gateway, "hi")
    assert reply.text == "[ok-fallback] hi (user messages: 1)"
    [switch] = seen
    assert (switch["session"], switch["from"], switch["to"]) == (
        "test:1",
        "local:bad-primary",
        "local:ok-fallback",
    )
    assert switch["error"].startswith("HTTP 400 from local:bad-primary")
    assert switch["agent"] is hook_recorder.of("post_run")[0]["agent"]

    # A primary that answers never fires it.
    quiet = await make_gateway(settings_for(fake_openai.url, "ok-primary", ["ok-fallback"]))
    await send(quiet, "hi", "test:2")
    assert len(seen) == 1


async def test_hook_post_run(make_gateway, register_plugin, fake_openai: FakeOpenAI) -> None:
    seen: list[dict[str, Any]] = []

    class Policy:
        @hookimpl
        async def post_run(
            self, session: Session, agent: Any, result: RunResult, cache: Any
        ) -> None:
            seen.append(
                {
                    "session": session.key,
                    "result": dict(result),
                    "agent_is_cached": agent is not None and cache.get(session.key) is agent,
                    "cached": len(cache),
                }
            )
            if session.key == "test:evict":
                cache.evict(session.key, "my_policy")

    evictions: list[str] = []

    class EvictObserver:
        @hookimpl
        def on_evict(self, reason: str) -> None:
            evictions.append(f"{reason} after {len(seen)} post_run")

    register_plugin(Policy())
    register_plugin(EvictObserver())
    register_plugin(Boom())  # raises in post_run: logged, the user still gets the answer
    gateway = await make_gateway()

    reply = await send(gateway, "hi")
    assert reply.text == "[ok-primary] hi (user messages: 1)"
    [ok] = seen
    assert ok["session"] == "test:1" and ok["agent_is_cached"] and ok["cached"] == 1
    assert set(ok["result"]) == RESULT_KEYS
    assert ok["result"]["failed"] is False
    assert ok["result"]["final_response"] == reply.text
    assert (ok["result"]["model"], ok["result"]["primary_model"]) == ("local:ok-primary",) * 2
    assert (ok["result"]["api_calls"], ok["result"]["tool_calls"]) == (1, 0)
    assert ok["result"]["duration_s"] > 0

    # A cache eviction made in post_run is announced by on_evict once the run is over.
    await send(gateway, "hi", "test:evict")
    assert "test:evict" not in gateway.cache
    assert evictions == ["my_policy after 2 post_run"]

    # It fires for failed runs too, with every key present.
    failing = await make_gateway(settings_for(fake_openai.url, "bad-primary"))
    reply = await send(failing, "hi", "test:2")
    failed = seen[-1]["result"]
    assert set(failed) == RESULT_KEYS
    assert (failed["failed"], failed["error_kind"]) == (True, "non_retryable")
    assert failed["final_response"] == reply.text
    assert seen[-1]["agent_is_cached"]  # a failed run keeps its agent


async def test_hook_on_evict(make_gateway, register_plugin, fake_openai: FakeOpenAI) -> None:
    seen: list[tuple[str, Any, str]] = []

    class Observer:
        @hookimpl
        async def on_evict(self, session_key: str, agent: Any, reason: str) -> None:
            seen.append((session_key, agent, reason))

    register_plugin(Observer())
    register_plugin(Boom())  # raises in on_evict: logged, the others still hear of it
    gateway = await make_gateway(
        settings_for(fake_openai.url, cache={"max_agents": 1, "idle_ttl_s": 0})
    )

    async def agent_of(key: str) -> Any:
        await send(gateway, "hi", key)
        return gateway.cache.get(key)

    first = await agent_of("s1")
    await send(gateway, "/reset", "s1")
    second = await agent_of("s1")
    await send(gateway, "/model local:ok-other", "s1")
    third = await agent_of("s1")
    fourth = await agent_of("s2")  # max_agents=1: s1's agent leaves
    await gateway.stop()
    assert seen == [
        ("s1", first, "reset"),
        ("s1", second, "model_changed"),
        ("s1", third, "lru"),
        ("s2", fourth, "shutdown"),
    ]
    assert len({id(agent) for _, agent, _ in seen}) == 4

    seen.clear()
    idle = await make_gateway(settings_for(fake_openai.url, cache={"idle_ttl_s": 0.2}))
    await send(idle, "hi", "s3")
    await eventually(lambda: bool(seen))
    assert [(key, reason) for key, _, reason in seen] == [("s3", "idle")]


# --- around each tool call -----------------------------------------------------------------


async def test_hook_pre_tool_call(make_gateway, register_plugin, fake_openai: FakeOpenAI) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    deleted: list[dict[str, Any]] = []

    class Tools:
        @hookimpl
        def register_tools(self, register: Callable[..., None]) -> None:
            register("add", add, "Add two integers.", ADD_PARAMETERS)
            register("delete", lambda arguments: deleted.append(arguments) or "deleted")

    class Guard:
        @hookimpl
        async def pre_tool_call(
            self, session: Session, tool: str, arguments: dict[str, Any]
        ) -> Any:
            seen.append((session.key, tool, arguments))
            return {"refused": tool} if tool == "delete" else None

    register_plugin(Tools())
    register_plugin(Guard())
    gateway = await make_gateway(settings_for(fake_openai.url, "tool-model"))

    # A non-None return replaces the call: the tool never runs and the model sees the value.
    reply = await send(gateway, 'call delete {"path": "/"}')
    assert reply.text == 'tool results: {"refused": "delete"}'
    assert deleted == []
    assert seen == [("test:1", "delete", {"path": "/"})]
    # None lets the call happen.
    assert (await send(gateway, 'call add {"a": 1, "b": 1}')).text == "tool results: 2"
    assert seen[-1] == ("test:1", "add", {"a": 1, "b": 1})


async def test_pre_tool_call_exception_blocks_only_that_call(
    make_gateway, register_plugin, fake_openai: FakeOpenAI
) -> None:
    class Broken:
        @hookimpl
        def pre_tool_call(self) -> None:
            raise RuntimeError("guard is broken")

    register_plugin(AddTool())
    register_plugin(Broken())
    gateway = await make_gateway(settings_for(fake_openai.url, "tool-model"))
    reply = await send(gateway, 'call add {"a": 1, "b": 1}')
    assert reply.text == "tool results: error: tool 'add' was blocked by a plugin error"
    assert reply.result is not None and reply.result["failed"] is False


async def test_hook_post_tool_call(make_gateway, register_plugin, fake_openai: FakeOpenAI) -> None:
    seen: list[tuple[str, str, dict[str, Any], str]] = []

    class Audit:
        @hookimpl
        async def post_tool_call(
            self, session: Session, tool: str, arguments: dict[str, Any], result: str
        ) -> None:
            seen.append((session.key, tool, arguments, result))

    class Replace:
        @hookimpl
        def pre_tool_call(self, arguments: dict[str, Any]) -> str | None:
            return "replaced" if arguments.get("a") == 0 else None

    register_plugin(AddTool())
    register_plugin(Audit())
    register_plugin(Replace())
    register_plugin(Boom())  # raises in post_tool_call: logged, the run carries on
    gateway = await make_gateway(settings_for(fake_openai.url, "tool-model"))

    assert (await send(gateway, 'call add {"a": 2, "b": 3}')).text == "tool results: 5"
    await send(gateway, 'call add {"a": 0, "b": 3}')
    await send(gateway, "call nosuch")
    bad = await make_gateway(settings_for(fake_openai.url, "badtool-model"))
    await send(bad, "call add", "test:2")

    assert seen[0] == ("test:1", "add", {"a": 2, "b": 3}, "5")
    # It sees exactly what the model sees: replacements and errors included.
    assert seen[1] == ("test:1", "add", {"a": 0, "b": 3}, "replaced")
    assert seen[2] == ("test:1", "nosuch", {}, "error: unknown tool 'nosuch'")
    session, tool, arguments, result = seen[3]
    assert (session, tool, arguments) == ("test:2", "add", {})
    assert result.startswith("error: invalid arguments for tool 'add'")
    assert len(seen) == 4
