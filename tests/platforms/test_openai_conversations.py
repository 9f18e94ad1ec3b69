"""Stateless conversations and client tools on the http platform, driven by the official
``openai`` client against the scripted upstream over real HTTP."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import httpx2
import openai
import pytest
from helpers_http import client_for, sync_client_for, user
from openai.types.chat import ChatCompletion

from hermes_core import hookimpl
from hermes_core.testing import FakeOpenAI, HookRecorder, ServeHttp, settings_for

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def offering_weather(
    client: openai.AsyncOpenAI, messages: list[Any], **options: Any
) -> ChatCompletion:
    """A completion of ``messages`` whose request offers the client tool :data:`WEATHER`."""
    return await client.chat.completions.create(
        model="any", messages=messages, tools=[WEATHER], **options
    )


@pytest.fixture
def serve_tools(serve_http: ServeHttp, fake_openai: FakeOpenAI) -> ServeHttp:
    """``await serve_tools(**platforms_http)``: ``serve_http`` over the scripted model
    ``tool-model``, which calls the tool a message names (``call get_weather``)."""
    return functools.partial(serve_http, settings_for(fake_openai.url, "tool-model"))


class Stamp:
    """A gateway tool."""

    @hookimpl
    def register_tools(self, register: Any) -> None:
        register("stamp", lambda arguments: "stamped", "Stamp something.")


# --- stateless conversations -----------------------------------------------------------------


async def test_a_stateless_request_is_answered_from_its_own_messages_and_kept_nowhere(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    gateway, platform = await serve_http()
    conversation: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second"},
    ]
    async with client_for(platform) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="any", messages=conversation
        )
    assert raw.parse().choices[0].message.content == "[ok-primary] second (user messages: 2)"
    assert "x-hermes-session" not in raw.headers
    assert fake_openai.requests[0].messages == conversation
    assert len(gateway.sessions) == 0 and len(gateway.cache) == 0
    [stored] = await gateway.store.sessions("http")
    assert stored.key.startswith("http:stateless:")
    lines = [line.message for line in await gateway.store.transcript(stored.key)]
    assert lines == [
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "[ok-primary] second (user messages: 2)"},
    ]


async def test_record_stateless_false_keeps_stateless_turns_out_of_the_store(
    serve_http: ServeHttp,
) -> None:
    gateway, platform = await serve_http(record_stateless=False)
    async with client_for(platform) as client:
        await client.chat.completions.create(model="any", messages=user("hi"))
        await client.chat.completions.create(
            model="any", messages=user("kept"), extra_headers={"X-Hermes-Session": "s"}
        )
    assert [s.key for s in await gateway.store.sessions("http")] == ["http:s"]


async def test_hooks_fire_for_a_stateless_run_with_a_stateless_session_key(
    serve_http: ServeHttp, hook_recorder: HookRecorder
) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        await client.chat.completions.create(model="any", messages=user("hi"))
    [pre_run] = hook_recorder.of("pre_run")
    [post_run] = hook_recorder.of("post_run")
    assert pre_run["session"].key.startswith("http:stateless:")
    assert post_run["session"].key == pre_run["session"].key
    assert post_run["result"]["final_response"] == "[ok-primary] hi (user messages: 1)"


async def test_a_session_id_cannot_pose_as_a_stateless_one(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="any", messages=user("hi"), user="stateless:abc"
            )
    assert "reserved" in refused.value.message


# --- client tools ----------------------------------------------------------------------------


async def test_client_tool_round_trip_in_a_session(
    serve_tools: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    gateway, platform = await serve_tools()
    headers = {"X-Hermes-Session": "tools"}
    async with client_for(platform) as client:
        called = await offering_weather(
            client, user('call get_weather {"city": "Oslo"}'), extra_headers=headers
        )
        choice = called.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls or []
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        assert await gateway.store.history(await gateway.session("http:tools", "http"), 50) == []
        answered = await offering_weather(
            client,
            [{"role": "tool", "tool_call_id": call.id, "content": "sunny"}],
            extra_headers=headers,
        )
    assert answered.choices[0].message.content == "tool results: sunny"
    assert answered.choices[0].finish_reason == "stop"
    assert fake_openai.requests[0].tools == [WEATHER]
    continued = fake_openai.requests[1].messages
    assert [m["role"] for m in continued] == ["user", "assistant", "tool"]
    assert continued[1]["tool_calls"][0]["id"] == call.id
    history = await gateway.store.history(await gateway.session("http:tools", "http"), 50)
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]


async def test_client_tool_round_trip_stateless_and_streamed(serve_tools: ServeHttp) -> None:
    gateway, platform = await serve_tools()
    messages: list[Any] = user("call get_weather")

    def streamed(messages: list[Any]) -> list[Any]:
        with sync_client_for(platform) as client:
            return list(
                client.chat.completions.create(
                    model="any", messages=messages, tools=[WEATHER], stream=True
                )
            )

    chunks = await asyncio.to_thread(streamed, messages)
    fragments = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    [[call]] = fragments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.id
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "rain"},
    ]
    chunks = await asyncio.to_thread(streamed, messages)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "tool results: rain"
    assert len(gateway.sessions) == 0 and len(gateway.cache) == 0
    assert len(platform.chats.suspended) == 0
    # The run resumed is the one suspended: one stateless session in the store, whole.
    [stored] = await gateway.store.sessions("http")
    roles = [line.message["role"] for line in await gateway.store.transcript(stored.key)]
    assert roles == ["user", "assistant", "tool", "assistant"]


async def test_gateway_and_client_calls_of_one_turn_are_joined_before_the_next_request(
    serve_tools: ServeHttp, fake_openai: FakeOpenAI, register_plugin: Any
) -> None:
    register_plugin(Stamp())
    _, platform = await serve_tools()
    async with client_for(platform) as client:
        called = await offering_weather(client, user("call-many stamp get_weather"))
        [call] = called.choices[0].message.tool_calls or []  # the gateway's call is its own
        assert call.function.name == "get_weather"
        answered = await offering_weather(
            client,
            [
                *user("call-many stamp get_weather"),
                called.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "fog"},
            ],
        )
    assert answered.choices[0].message.content == "tool results: stamped | fog"
    offered = {tool["function"]["name"] for tool in fake_openai.requests[0].tools or []}
    assert offered == {"stamp", "get_weather"}


async def test_a_client_tool_named_like_a_gateway_tool_is_a_400(
    serve_tools: ServeHttp, fake_openai: FakeOpenAI, register_plugin: Any
) -> None:
    register_plugin(Stamp())
    _, platform = await serve_tools()
    clash = {"type": "function", "function": {"name": "stamp"}}
    async with client_for(platform) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="any", messages=user("x"), tools=[clash])
    assert refused.value.param == "tools"
    assert "'stamp'" in refused.value.message
    assert fake_openai.requests == []


async def test_tool_results_no_run_waits_for_are_a_400_in_a_session(serve_tools: ServeHttp) -> None:
    _, platform = await serve_tools()
    body = {"messages": [{"role": "tool", "tool_call_id": "call_1", "content": "x"}]}
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        response = await http.post(
            "/v1/chat/completions", json=body, headers={"X-Hermes-Session": "s"}
        )
    assert response.status_code == 400
    assert "no run of this session is waiting" in response.json()["error"]["message"]


async def test_a_new_user_message_abandons_a_suspended_run_without_poisoning_the_history(
    serve_tools: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    gateway, platform = await serve_tools()
    headers = {"X-Hermes-Session": "abandon"}
    async with client_for(platform) as client:
        called = await offering_weather(client, user("call get_weather"), extra_headers=headers)
        assert called.choices[0].finish_reason == "tool_calls"
        moved_on = await client.chat.completions.create(
            model="any", messages=user("never mind"), extra_headers=headers
        )
        [call] = called.choices[0].message.tool_calls or []
        with pytest.raises(openai.BadRequestError) as late:
            await client.chat.completions.create(
                model="any",
                messages=[{"role": "tool", "tool_call_id": call.id, "content": "too late"}],
                extra_headers=headers,
            )
    assert moved_on.choices[0].message.content == "[tool-model] never mind (user messages: 1)"
    sent = fake_openai.requests[-1].messages
    assert sent == [{"role": "user", "content": "never mind"}], "no dangling tool call"
    assert late.value.param == "messages"
    [summary] = await gateway.store.sessions("http")
    assert summary.unanswered == 1  # the abandoned turn's message, kept out of the history


async def test_results_for_only_some_calls_are_a_400_and_the_run_still_waits(
    serve_tools: ServeHttp,
) -> None:
    _, platform = await serve_tools()
    other = {"type": "function", "function": {"name": "get_time"}}
    headers = {"X-Hermes-Session": "partial"}
    async with client_for(platform) as client:
        called = await client.chat.completions.create(
            model="any",
            messages=user("call-many get_weather get_time"),
            tools=[WEATHER, other],
            extra_headers=headers,
        )
        first, second = called.choices[0].message.tool_calls or []
        with pytest.raises(openai.BadRequestError) as partial:
            await client.chat.completions.create(
                model="any",
                messages=[{"role": "tool", "tool_call_id": first.id, "content": "a"}],
                extra_headers=headers,
            )
        answered = await client.chat.completions.create(
            model="any",
            messages=[
                {"role": "tool", "tool_call_id": second.id, "content": "b"},
                {"role": "tool", "tool_call_id": first.id, "content": "a"},
            ],
            extra_headers=headers,
        )
    assert second.id in partial.value.message
    assert answered.choices[0].message.content == "tool results: a | b", "in the model's order"


async def test_a_stateless_run_no_longer_kept_continues_from_the_messages_sent(
    serve_tools: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_tools(max_suspended_runs=1)
    async with client_for(platform) as client:
        first = await offering_weather(client, user("call get_weather"))
        # A second suspended run: past max_suspended_runs, the first is dropped.
        await offering_weather(client, user("call get_weather"))
        assert len(platform.chats.suspended) == 1
        message = first.choices[0].message
        [call] = message.tool_calls or []
        answered = await offering_weather(
            client,
            [
                *user("call get_weather"),
                message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "hail"},
            ],
        )
    assert answered.choices[0].message.content == "tool results: hail"
    assert [m["role"] for m in fake_openai.requests[-1].messages] == ["user", "assistant", "tool"]


async def test_a_stateless_run_is_resumed_only_by_the_api_key_that_started_it(
    serve_tools: ServeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERMES_TEST_ALICE_KEY", "sk-alice")
    monkeypatch.setenv("HERMES_TEST_BOB_KEY", "sk-bob")
    keys = [
        {"name": "alice", "key_env": "HERMES_TEST_ALICE_KEY"},
        {"name": "bob", "key_env": "HERMES_TEST_BOB_KEY"},
    ]
    _, platform = await serve_tools(api_keys=keys)
    async with client_for(platform, "sk-alice") as alice, client_for(platform, "sk-bob") as bob:
        called = await offering_weather(alice, user("call get_weather"))
        message = called.choices[0].message
        [call] = message.tool_calls or []
        answer = [
            *user("call get_weather"),
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sun"},
        ]
        await offering_weather(bob, answer)
        assert len(platform.chats.suspended) == 1, "bob's results did not resume alice's run"
        await offering_weather(alice, answer)
    assert len(platform.chats.suspended) == 0
