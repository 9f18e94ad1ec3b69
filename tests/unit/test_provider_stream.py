"""The OpenAI provider's streaming call and request path, over real HTTP to the scripted server.

Each test drives ``OpenAIProvider`` (as the gateway creates it from settings) against
``FakeOpenAI``, which writes every server-sent event on its own, when its script says.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hermes_core.plugins.openai_provider import OpenAIProvider
from hermes_core.providers import (
    Completion,
    ProviderError,
    StreamEvent,
    StreamFinished,
    TextDelta,
    ToolCallReady,
    Usage,
    stream_completion,
)
from hermes_core.settings import config_from_dict
from hermes_core.testing import FakeOpenAI, settings_for

HELLO = [{"role": "user", "content": "hello"}]
TIME_TOOL = {
    "type": "function",
    "function": {"name": "srv__get_time", "parameters": {"type": "object"}},
}
MakeProvider = Callable[..., Awaitable[OpenAIProvider]]


@pytest.fixture
async def make_provider(fake_openai: FakeOpenAI) -> AsyncIterator[MakeProvider]:
    """``await make_provider(**options)``: the provider ``local`` with ``providers.local``
    options merged over the test defaults, closed after the test."""
    made: list[OpenAIProvider] = []

    async def make(base_url: str = fake_openai.url, **options: Any) -> OpenAIProvider:
        settings = settings_for(base_url)
        settings["providers"]["local"].update(options)
        provider = OpenAIProvider("local", config_from_dict(settings).providers["local"])
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def timed_events(
    provider: OpenAIProvider,
    model: str,
    messages: list[dict[str, Any]] = HELLO,
    tools: list[dict[str, Any]] | None = None,
    **params: Any,
) -> list[tuple[float, StreamEvent]]:
    """Every event of one stream, with the seconds since the request started."""
    started = time.perf_counter()
    return [
        (time.perf_counter() - started, event)
        async for event in provider.stream(model, messages, tools, **params)
    ]


def finished(events: list[tuple[float, StreamEvent]]) -> Completion:
    last = events[-1][1]
    assert isinstance(last, StreamFinished)
    assert not any(isinstance(event, StreamFinished) for _, event in events[:-1])
    return last.completion


@pytest.mark.slow
async def test_first_delta_arrives_before_the_upstream_has_finished(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    provider = await make_provider()
    await provider.complete("ok-warm-up", HELLO, None)  # imports and the pool, not timed
    fake_openai.clear()
    events = await timed_events(provider, "stream-10-100-x")

    deltas = [(at, event.text) for at, event in events if isinstance(event, TextDelta)]
    assert len(deltas) == 10
    first_at, last_at = deltas[0][0], deltas[-1][0]
    # The upstream waits 100 ms before each of its 10 chunks: 1 s in all.
    assert first_at < 0.5, f"first delta after {first_at:.3f}s"
    assert last_at >= 0.85
    assert last_at - first_at >= 0.8
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(deltas)]
    assert all(gap > 0.03 for gap in gaps), gaps  # each delta as its chunk arrived
    text = "".join(piece for _, piece in deltas)
    assert text == "[stream-10-100-x] hello (user messages: 1)"
    completion = finished(events)
    assert completion.content == text
    assert completion.finish_reason == "stop"
    [request] = fake_openai.snapshot()
    assert request.stream is True
    assert request.body["stream_options"] == {"include_usage": True}


async def test_deltas_in_order_with_usage_match_the_whole_completion(
    make_provider: MakeProvider,
) -> None:
    provider = await make_provider()
    messages = [{"role": "user", "content": "one two three four five"}]
    whole = await provider.complete("ok-x", messages, None)
    events = await timed_events(provider, "ok-x", messages)

    deltas = [event.text for _, event in events if isinstance(event, TextDelta)]
    assert len(deltas) > 5  # word by word, not one piece
    assert "".join(deltas) == whole.content == "[ok-x] one two three four five (user messages: 1)"
    streamed = finished(events)
    assert streamed.content == whole.content
    assert streamed.finish_reason == whole.finish_reason == "stop"
    assert isinstance(streamed.usage, Usage) and streamed.usage == whole.usage
    usage = streamed.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_tool_call_fragments_are_assembled_into_whole_calls(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    provider = await make_provider()
    messages = [{"role": "user", "content": "call-many get_time get_time"}]
    arguments = {"tz": "Europe/Amsterdam", "format": "iso"}
    events = await timed_events(provider, "tool-x", messages, tools=[TIME_TOOL])
    single = [{"role": "user", "content": f"call get_time {json.dumps(arguments)}"}]
    single_events = [e async for e in provider.stream("tool-x", single, [TIME_TOOL])]

    calls = [event.call for _, event in events if isinstance(event, ToolCallReady)]
    assert [call.name for call in calls] == ["srv__get_time", "srv__get_time"]
    assert calls[0].id != calls[1].id
    assert [json.loads(call.arguments) for call in calls] == [{}, {}]
    completion = finished(events)
    assert completion.tool_calls == calls
    assert completion.finish_reason == "tool_calls"
    assert completion.content is None
    [call] = [event.call for event in single_events if isinstance(event, ToolCallReady)]
    # The server sends these arguments in 8-character fragments: assembled, they are whole.
    assert len(call.arguments) > 8
    assert json.loads(call.arguments) == arguments


@pytest.mark.slow
async def test_a_stalled_stream_is_a_timeout(make_provider: MakeProvider) -> None:
    provider = await make_provider(stall_timeout_s=0.3, timeout_s=10)
    received: list[str] = []
    started = time.perf_counter()
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream("stall-2-x", HELLO, None):
            if isinstance(event, TextDelta):
                received.append(event.text)
    elapsed = time.perf_counter() - started
    assert caught.value.kind == "timeout"
    assert "local:stall-2-x stalled: no data for 0.3s" in str(caught.value)
    assert len(received) == 2  # what came before the stall was passed on
    assert 0.3 <= elapsed < 3


async def test_an_upstream_that_refuses_streaming_gets_whole_requests_from_then_on(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    provider = await make_provider()
    first = [event for _, event in await timed_events(provider, "nostream-x")]
    assert [type(event) for event in first] == [TextDelta, StreamFinished]
    assert isinstance(first[0], TextDelta)
    assert first[0].text == "[nostream-x] hello (user messages: 1)"
    assert [request.stream for request in fake_openai.snapshot()] == [True, False]

    fake_openai.clear()
    again = [event for _, event in await timed_events(provider, "nostream-x")]
    assert again == first
    assert [request.stream for request in fake_openai.snapshot()] == [False]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "kind", "status", "says"),
    [
        ("bad-x", "non_retryable", 400, "HTTP 400 from local:bad-x: The model `bad-x` does not"),
        ("auth-x", "auth", 401, "HTTP 401 from local:auth-x: Incorrect API key"),
        ("ratelimit-0.2-x", "rate_limit", 429, "HTTP 429 from local:ratelimit-0.2-x"),
        ("quota-x", "non_retryable", 429, "exceeded your current quota"),
        ("error500-x", "server", 500, "HTTP 500 from local:error500-x"),
        ("hang-x", "timeout", None, "local:hang-x timed out after 0.3s"),
        ("empty-x", "server", None, "malformed response from local:empty-x: empty message"),
    ],
)
async def test_errors_before_the_first_delta_are_classified_as_for_complete(
    make_provider: MakeProvider, model: str, kind: str, status: int | None, says: str
) -> None:
    provider = await make_provider(timeout_s=0.3)
    for attempt in ("stream", "complete"):
        with pytest.raises(ProviderError) as caught:
            if attempt == "stream":
                await timed_events(provider, model)
            else:
                await provider.complete(model, HELLO, None)
        assert (caught.value.kind, caught.value.status) == (kind, status), attempt
        assert says in str(caught.value), attempt
    assert provider.streams is True  # an error is not a refusal to stream


async def test_retry_after_reaches_the_error(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderError) as caught:
        await timed_events(provider, "ratelimit-0.2-x")
    assert caught.value.retry_after == 0.2


async def test_connection_refused_is_a_connection_error(make_provider: MakeProvider) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = await make_provider(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ProviderError) as caught:
        await timed_events(provider, "ok-x")
    assert caught.value.kind == "connection"
    assert f"connection to local:ok-x failed: Cannot connect to host 127.0.0.1:{port}" in str(
        caught.value
    )


@pytest.mark.slow
async def test_the_pool_keeps_its_connections_under_many_concurrent_sessions(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    provider = await make_provider()
    before = fake_openai.connections_accepted
    sessions = 150  # more than the SDK's default pool keeps alive (100)

    async def session(number: int) -> None:
        for turn in range(3):
            messages = [{"role": "user", "content": f"s{number} t{turn}"}]
            completion = await provider.complete("slow-0.05-x", messages, None)
            assert completion.content == f"[slow-0.05-x] s{number} t{turn} (user messages: 1)"

    await asyncio.gather(*(session(n) for n in range(sessions)))
    assert len(fake_openai.snapshot()) == 3 * sessions
    # One connection per concurrent session, reused for its later requests: no churn.
    assert fake_openai.connections_accepted - before <= sessions


@pytest.mark.slow
async def test_max_connections_bounds_the_pool(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    provider = await make_provider(max_connections=2)
    before = fake_openai.connections_accepted
    started = time.perf_counter()
    await asyncio.gather(*(provider.complete("slow-0.2-x", HELLO, None) for _ in range(6)))
    # Six requests of 0.2 s over two connections take three rounds.
    assert time.perf_counter() - started >= 0.55
    assert fake_openai.connections_accepted - before == 2


async def test_params_go_into_the_request_body(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    provider = await make_provider()
    await provider.complete("ok-x", HELLO, None, temperature=0.2, max_tokens=7)
    await timed_events(provider, "ok-x", temperature=0.3)
    whole, streamed = fake_openai.snapshot()
    assert (whole.body["temperature"], whole.body["max_tokens"]) == (0.2, 7)
    assert "stream" not in whole.body
    assert (streamed.body["temperature"], streamed.body["stream"]) == (0.3, True)


class WholeOnly:
    """A provider plugin that implements only ``complete``."""

    async def complete(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> Completion:
        return Completion(content=f"whole: {messages[-1]['content']}", finish_reason="stop")

    async def aclose(self) -> None:
        pass


async def test_stream_completion_serves_a_provider_without_stream_in_one_piece() -> None:
    events = [event async for event in stream_completion(WholeOnly(), "m", HELLO, None)]
    assert events == [
        TextDelta("whole: hello"),
        StreamFinished(Completion(content="whole: hello", finish_reason="stop")),
    ]


async def test_stream_completion_closes_the_upstream_when_the_consumer_stops_early(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    provider = await make_provider()
    events = stream_completion(provider, "stream-10-100-x", HELLO, None)
    first = await anext(events)
    assert isinstance(first, TextDelta)
    await events.aclose()  # type: ignore[attr-defined]
    # The abandoned response was dropped, not left to fill the pool: a new request works.
    assert (await provider.complete("ok-x", HELLO, None)).content == (
        "[ok-x] hello (user messages: 1)"
    )
