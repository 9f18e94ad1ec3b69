"""Tests for :mod:`hermes_core.testing.fake_openai`, driven by the real ``openai`` client."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall

from hermes_core.testing.fake_openai import FakeOpenAI

USER_HI: list[Any] = [{"role": "user", "content": "hi"}]
# Typed Any: plain dicts stand in for openai's TypedDict tool params.
TIME_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "srv__get_time",
        "description": "Current time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}


def tool(name: str) -> Any:
    """A minimal function tool definition."""
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake_openai.url, api_key="test", max_retries=0) as c:
        yield c


async def ask(client: openai.AsyncOpenAI, model: str, messages: list[Any] = USER_HI) -> str:
    """Make a non-streamed request and return the answer text."""
    completion = await client.chat.completions.create(model=model, messages=messages)
    content = completion.choices[0].message.content
    assert content is not None
    return content


def function_calls(completion: ChatCompletion) -> list[ChatCompletionMessageFunctionToolCall]:
    """The function tool calls of the first choice."""
    calls = completion.choices[0].message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


# -- answers ---------------------------------------------------------------------------------


async def test_ok_echoes_last_user_text_and_counts_user_messages(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "sure"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]
    completion = await client.chat.completions.create(model="ok-primary", messages=messages)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "ok-primary"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "[ok-primary] second (user messages: 2)"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    [recorded] = fake_openai.requests_for("ok-")
    assert recorded.model == "ok-primary"
    assert recorded.messages == messages
    assert recorded.tools is None
    assert recorded.stream is False
    assert recorded.headers["authorization"] == "Bearer test"
    assert recorded.body["model"] == "ok-primary"


async def test_nochoices_returns_empty_choices(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="nochoices-x", messages=USER_HI)
    assert completion.choices == []


@pytest.mark.slow
async def test_slow_answers_after_delay(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    assert await ask(client, "slow-0.3-x") == "[slow-0.3-x] hi (user messages: 1)"
    assert time.monotonic() - started >= 0.3


@pytest.mark.slow
async def test_slow_does_not_block_other_requests(client: openai.AsyncOpenAI) -> None:
    slow = asyncio.create_task(ask(client, "slow-0.6-x"))
    started = time.monotonic()
    assert await ask(client, "ok-fast") == "[ok-fast] hi (user messages: 1)"
    assert time.monotonic() - started < 0.4
    assert not slow.done()
    assert await slow == "[slow-0.6-x] hi (user messages: 1)"


# -- errors ----------------------------------------------------------------------------------


async def test_bad_model_is_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        await ask(client, "bad-fallback")
    assert excinfo.value.status_code == 400
    assert excinfo.value.code == "model_not_found"
    assert excinfo.value.type == "invalid_request_error"
    assert "`bad-fallback` does not exist" in excinfo.value.message


async def test_auth_model_is_authentication_error(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as excinfo:
        await ask(client, "auth-x")
    assert excinfo.value.status_code == 401
    assert excinfo.value.code == "invalid_api_key"


@pytest.mark.parametrize(
    ("model", "error", "code"),
    [
        ("forbidden-x", openai.PermissionDeniedError, "permission_denied"),
        ("notfound-x", openai.NotFoundError, "model_not_found"),
        ("no-such-model", openai.NotFoundError, "model_not_found"),
        ("okay", openai.NotFoundError, "model_not_found"),
    ],
)
async def test_other_error_models(
    client: openai.AsyncOpenAI, model: str, error: type[openai.APIStatusError], code: str
) -> None:
    with pytest.raises(error) as excinfo:
        await ask(client, model)
    assert excinfo.value.code == code


async def test_ratelimit_sets_retry_after(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as excinfo:
        await ask(client, "ratelimit-0.5")
    assert excinfo.value.response.headers["retry-after"] == "0.5"
    assert excinfo.value.type == "rate_limit_error"
    assert excinfo.value.code == "rate_limit_exceeded"


async def test_ratelimit_defaults_retry_after_to_one(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as excinfo:
        await ask(client, "ratelimit-primary")
    assert excinfo.value.response.headers["retry-after"] == "1"


async def test_quota_is_429_without_retry_after(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as excinfo:
        await ask(client, "quota-x")
    assert excinfo.value.code == "insufficient_quota"
    assert "quota" in excinfo.value.message
    assert "retry-after" not in excinfo.value.response.headers


async def test_error500_is_internal_server_error(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as excinfo:
        await ask(client, "error500-x")
    assert excinfo.value.status_code == 500
    assert excinfo.value.type == "server_error"


async def test_flaky_fails_n_times_per_model_then_succeeds(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await ask(client, "flaky-2-a")
    # Counted per exact model name: another flaky-2 model starts from zero.
    with pytest.raises(openai.InternalServerError):
        await ask(client, "flaky-2-b")
    assert await ask(client, "flaky-2-a") == "[flaky-2-a] hi (user messages: 1)"
    assert await ask(client, "flaky-2-a") == "[flaky-2-a] hi (user messages: 1)"
    assert len(fake_openai.requests_for("flaky-2-a")) == 4


@pytest.mark.slow
async def test_flaky_recovers_with_client_retries(fake_openai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(base_url=fake_openai.url, api_key="test", max_retries=2) as c:
        assert await ask(c, "flaky-retry") == "[flaky-retry] hi (user messages: 1)"
    assert len(fake_openai.requests_for("flaky-retry")) == 2


async def test_garbage_body_raises(client: openai.AsyncOpenAI) -> None:
    # openai 3.57 does not wrap this: the undecodable 200 body surfaces as JSONDecodeError.
    with pytest.raises(json.JSONDecodeError):
        await ask(client, "garbage-x")


async def test_empty_message_has_neither_content_nor_tool_calls(
    client: openai.AsyncOpenAI,
) -> None:
    completion = await client.chat.completions.create(model="empty-x", messages=USER_HI)
    message = completion.choices[0].message
    assert message.content is None
    assert not message.tool_calls


def test_html_page_and_truncated_completion(fake_openai: FakeOpenAI) -> None:
    request = {"messages": USER_HI}
    with httpx2.Client(base_url=fake_openai.url, timeout=10) as http:
        page = http.post("/chat/completions", json={"model": "html-x", **request})
        with pytest.raises(httpx2.RemoteProtocolError, match="complete message body"):
            http.post("/chat/completions", json={"model": "truncated-x", **request})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<html>")
    assert [r.model for r in fake_openai.requests] == ["html-x", "truncated-x"]


# -- tools -----------------------------------------------------------------------------------


async def test_tool_round_trip(client: openai.AsyncOpenAI, fake_openai: FakeOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": 'call get_time {"tz": "UTC"}'}]
    first = await client.chat.completions.create(
        model="tool-x", messages=messages, tools=[tool("srv__other"), TIME_TOOL]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = function_calls(first)
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "srv__get_time"
    assert json.loads(call.function.arguments) == {"tz": "UTC"}

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "12:00"},
    ]
    second = await client.chat.completions.create(
        model="tool-x", messages=messages, tools=[TIME_TOOL]
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "tool results: 12:00"

    recorded = fake_openai.requests_for("tool-")
    assert len(recorded) == 2
    assert recorded[1].tools == [TIME_TOOL]
    assert recorded[1].messages[-1]["role"] == "tool"


async def test_tool_call_many_and_joined_results(client: openai.AsyncOpenAI) -> None:
    tools = [tool("a__one"), tool("a__two")]
    messages: list[Any] = [{"role": "user", "content": "call-many one two missing"}]
    completion = await client.chat.completions.create(
        model="tool-x", messages=messages, tools=tools
    )
    calls = function_calls(completion)
    assert [c.function.name for c in calls] == ["a__one", "a__two", "missing"]
    assert [c.function.arguments for c in calls] == ["{}", "{}", "{}"]
    assert len({c.id for c in calls}) == 3

    messages.append(completion.choices[0].message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": c.id, "content": f"r{i}"} for i, c in enumerate(calls)
    ]
    assert await ask(client, "tool-x", messages) == "tool results: r0 | r1 | r2"


async def test_tool_defaults(client: openai.AsyncOpenAI) -> None:
    # No directive: first offered tool with {}.
    completion = await client.chat.completions.create(
        model="tool-x", messages=USER_HI, tools=[tool("first"), tool("second")]
    )
    [call] = function_calls(completion)
    assert (call.function.name, call.function.arguments) == ("first", "{}")
    # `call <name>` without JSON means {}; an unknown name is called anyway.
    messages: list[Any] = [{"role": "user", "content": "call nope"}]
    completion = await client.chat.completions.create(
        model="tool-x", messages=messages, tools=[tool("first")]
    )
    [call] = function_calls(completion)
    assert (call.function.name, call.function.arguments) == ("nope", "{}")
    # No tools offered: answers like ok-*.
    assert await ask(client, "tool-x") == "[tool-x] hi (user messages: 1)"


async def test_badtool_sends_invalid_arguments(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="badtool-x", messages=USER_HI, tools=[TIME_TOOL]
    )
    [call] = function_calls(completion)
    assert call.function.name == "srv__get_time"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)


# -- streaming -------------------------------------------------------------------------------


async def test_streaming_concatenates_to_non_streaming_text(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    messages: list[Any] = [{"role": "user", "content": "hello  streaming world"}]
    expected = await ask(client, "ok-stream", messages)

    stream = await client.chat.completions.create(model="ok-stream", messages=messages, stream=True)
    pieces: list[str] = []
    finish_reasons: list[str | None] = []
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish_reasons.append(choice.finish_reason)

    assert "".join(pieces) == expected
    assert len([p for p in pieces if p]) > 1
    assert finish_reasons[-1] == "stop"
    assert fake_openai.requests_for("ok-stream")[-1].stream is True


async def test_streaming_tool_calls(client: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": 'call get_time {"tz": "UTC"}'}]
    async with client.chat.completions.stream(
        model="tool-x", messages=messages, tools=[TIME_TOOL]
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    [call] = function_calls(final)
    assert call.function.name == "srv__get_time"
    assert json.loads(call.function.arguments) == {"tz": "UTC"}


async def test_streaming_error_is_plain_json_error(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        await client.chat.completions.create(model="bad-x", messages=USER_HI, stream=True)
    assert excinfo.value.code == "model_not_found"


async def raw_events(
    fake_openai: FakeOpenAI, model: str, messages: list[Any] = USER_HI, **body: Any
) -> list[tuple[float, Any]]:
    """The ``data`` payloads of a streamed request, decoded, with seconds since it was sent."""
    payload = {"model": model, "messages": messages, "stream": True, **body}
    events: list[tuple[float, Any]] = []
    async with httpx2.AsyncClient(timeout=10) as http:
        started = time.perf_counter()
        async with http.stream(
            "POST", f"{fake_openai.url}/chat/completions", json=payload
        ) as reply:
            assert reply.status_code == 200
            assert reply.headers["content-type"] == "text/event-stream"
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    decoded = data if data == "[DONE]" else json.loads(data)
                    events.append((time.perf_counter() - started, decoded))
    return events


def contents(events: list[tuple[float, Any]]) -> list[tuple[float, str]]:
    return [
        (at, choice["delta"]["content"])
        for at, event in events
        if event != "[DONE]"
        for choice in event["choices"]
        if choice["delta"].get("content")
    ]


@pytest.mark.slow
async def test_stream_model_sends_chunks_apart_in_real_time(fake_openai: FakeOpenAI) -> None:
    events = await raw_events(fake_openai, "stream-5-100-x")
    pieces = contents(events)
    assert len(pieces) == 5
    assert "".join(text for _, text in pieces) == "[stream-5-100-x] hi (user messages: 1)"
    times = [at for at, _ in pieces]
    assert times[0] >= 0.09  # each chunk waits its 100 ms, the first too
    assert all(later - earlier >= 0.09 for earlier, later in itertools.pairwise(times)), times
    assert events[-1][1] == "[DONE]"


async def test_stream_model_unstreamed_answers_whole_after_the_same_time(
    client: openai.AsyncOpenAI,
) -> None:
    started = time.perf_counter()
    assert await ask(client, "stream-4-50-x") == "[stream-4-50-x] hi (user messages: 1)"
    assert time.perf_counter() - started >= 0.2


async def test_usage_chunk_only_when_asked(fake_openai: FakeOpenAI) -> None:
    without = [event for _, event in await raw_events(fake_openai, "ok-x")]
    asked = [
        event
        for _, event in await raw_events(
            fake_openai, "ok-x", stream_options={"include_usage": True}
        )
    ]
    assert all("usage" not in event for event in without if event != "[DONE]")
    *chunks, usage_chunk, done = asked
    assert done == "[DONE]"
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert all(chunk["usage"] is None for chunk in chunks)


async def test_streamed_tool_calls_come_in_fragments(fake_openai: FakeOpenAI) -> None:
    arguments = '{"tz": "Europe/Amsterdam"}'
    messages = [{"role": "user", "content": f"call get_time {arguments}"}]
    events = await raw_events(fake_openai, "tool-x", messages, tools=[TIME_TOOL])
    fragments = [
        call
        for _, event in events
        if event != "[DONE]"
        for choice in event["choices"]
        for call in choice["delta"].get("tool_calls") or []
    ]
    assert len(fragments) > 2
    first, *rest = fragments
    assert first["id"].startswith("call_") and first["function"]["name"] == "srv__get_time"
    assert all("id" not in fragment and fragment["index"] == 0 for fragment in rest)
    assert "".join(f["function"]["arguments"] for f in fragments) == arguments


@pytest.mark.slow
async def test_stall_model_stops_sending_until_the_server_stops() -> None:
    server = FakeOpenAI().start()
    try:
        payload = {"model": "stall-3-x", "messages": USER_HI, "stream": True}
        pieces: list[str] = []
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=0.5)) as http:
            with pytest.raises(httpx2.ReadTimeout):
                async with http.stream(
                    "POST", f"{server.url}/chat/completions", json=payload
                ) as reply:
                    async for line in reply.aiter_lines():
                        if line.startswith("data: {"):
                            delta = json.loads(line[6:])["choices"][0]["delta"]
                            pieces.extend([delta["content"]] if delta.get("content") else [])
        assert len(pieces) == 3
    finally:
        server.stop()


async def test_nostream_model_refuses_streaming_only(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        await client.chat.completions.create(model="nostream-x", messages=USER_HI, stream=True)
    assert excinfo.value.code == "unsupported_parameter"
    assert "stream" in excinfo.value.message.lower()
    assert await ask(client, "nostream-x") == "[nostream-x] hi (user messages: 1)"


@pytest.mark.parametrize("word", ["soon", "date"])
async def test_ratelimit_can_send_an_unparsable_or_dated_retry_after(
    client: openai.AsyncOpenAI, word: str
) -> None:
    with pytest.raises(openai.RateLimitError) as excinfo:
        await ask(client, f"ratelimit-{word}-x")
    header = excinfo.value.response.headers["retry-after"]
    if word == "soon":
        assert header == "soon"
    else:
        assert email.utils.parsedate_to_datetime(header).timestamp() > time.time() - 1


async def test_connections_accepted_counts_new_connections(fake_openai: FakeOpenAI) -> None:
    before = fake_openai.connections_accepted
    async with httpx2.AsyncClient() as http:
        for _ in range(3):  # one keep-alive connection for all three
            reply = await http.post(
                f"{fake_openai.url}/chat/completions", json={"model": "ok-x", "messages": USER_HI}
            )
            assert reply.status_code == 200
    assert fake_openai.connections_accepted - before == 1


# -- plain HTTP ------------------------------------------------------------------------------


def test_http_endpoints_and_errors(fake_openai: FakeOpenAI) -> None:
    root = fake_openai.url.removesuffix("/v1")
    with httpx2.Client(base_url=root) as http:
        assert http.get("/health").json() == {"status": "ok"}

        models = http.get("/v1/models").json()
        assert models["object"] == "list"
        assert {"ok-model", "tool-model"} <= {m["id"] for m in models["data"]}

        missing = http.get("/v1/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["param"] is None

        not_json = http.post("/v1/chat/completions", content=b"{oops")
        assert not_json.status_code == 400
        assert not_json.json()["error"]["type"] == "invalid_request_error"

        for body in ({"messages": USER_HI}, {"model": "ok-x"}):
            response = http.post("/v1/chat/completions", json=body)
            assert response.status_code == 400
            assert set(response.json()["error"]) == {"message", "type", "code", "param"}

        # No Authorization header: still served.
        answer = http.post("/v1/chat/completions", json={"model": "ok-x", "messages": USER_HI})
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"] == "[ok-x] hi (user messages: 1)"

        recorded = http.get("/_requests").json()
        assert recorded == [
            {"model": "ok-x", "messages": USER_HI, "tools": None, "stream": False, "params": {}}
        ]
        assert http.delete("/_requests").status_code == 200
        assert http.get("/_requests").json() == []
    assert fake_openai.requests == []


# -- lifecycle -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_hang_times_out_and_stop_is_prompt() -> None:
    server = FakeOpenAI().start()
    try:
        async with openai.AsyncOpenAI(
            base_url=server.url, api_key="test", max_retries=0, timeout=0.5
        ) as c:
            with pytest.raises(openai.APITimeoutError):
                await ask(c, "hang-x")
            # Leave one request hanging in flight while stopping.
            pending = asyncio.create_task(ask(c, "hang-y"))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            assert time.monotonic() - started < 2
            with pytest.raises(openai.APIConnectionError):
                await pending
        assert [r.model for r in server.requests] == ["hang-x", "hang-y"]
    finally:
        server.stop()
    server.stop()  # idempotent


def test_stop_drops_connections_and_frees_port() -> None:
    server = FakeOpenAI().start()
    url = server.url
    with httpx2.Client(base_url=url) as http:
        assert http.get("/models").status_code == 200  # leaves a pooled keep-alive connection
        server.stop()
        with pytest.raises(httpx2.TransportError):
            http.get("/models")
    with pytest.raises(RuntimeError):
        FakeOpenAI().port  # noqa: B018 - the property access is what raises


def test_subprocess_mode() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hermes_core.testing.fake_openai", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        prefix = "listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.endswith("/v1"), line
        url = line.removeprefix("listening on ")

        response = httpx2.post(
            f"{url}/chat/completions",
            json={"model": "ok-proc", "messages": USER_HI},
            headers={"Authorization": "Bearer test"},
        )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == (
            "[ok-proc] hi (user messages: 1)"
        )

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "Traceback" not in stderr
    assert stdout == ""  # exactly one line was printed, and it was read above
