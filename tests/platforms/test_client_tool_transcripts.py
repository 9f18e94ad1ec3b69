"""What the transcript store keeps of client-tool runs and stateless continuations, over real
SQLite and PostgreSQL stores: a suspended run nobody continues ends ``failed`` (never left
``pending``, which says the process died), one resumed in time ends ``answered``, and a
stateless continuation that no run waits for stores each message once."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from helpers_http import client_for, user
from openai.types.chat import ChatCompletion

from hermes_core.pg_store import PostgresStore
from hermes_core.plugins.http import HttpPlatform
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.store import Store
from hermes_core.testing import FakeOpenAI, ServeHttp, settings_for

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


#: For a test whose store calls are another test's over PostgreSQL too: SQLite alone.
SQLITE_ONLY = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A real store, not yet opened (the gateway opens and closes it): SQLite on a new file,
    PostgreSQL on a new database of the test session's cluster."""
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "sessions.db")
    else:
        yield PostgresStore(request.getfixturevalue("postgres_url"))


@pytest.fixture
def serve_tools(serve_http: ServeHttp, fake_openai: FakeOpenAI, store: Store) -> ServeHttp:
    """``await serve_tools(**platforms_http)``: ``serve_http`` on ``store`` over the scripted
    model ``tool-model``, which calls the tool a message names (``call get_weather``)."""
    return functools.partial(serve_http, settings_for(fake_openai.url, "tool-model"), store)


async def ask(
    platform: HttpPlatform, messages: list[Any], *, offer: bool = True, **options: Any
) -> ChatCompletion:
    """A completion of ``messages``, whose request offers the client tool :data:`WEATHER`
    unless not ``offer``."""
    async with client_for(platform) as client:
        return await client.chat.completions.create(
            model="any", messages=messages, tools=[WEATHER] if offer else [], **options
        )


async def lines(store: Store, key: str) -> list[tuple[str, str | None, str]]:
    """Session ``key``'s transcript as ``(role, content, status)``, oldest first."""
    return [
        (line.message["role"], line.message.get("content"), line.status)
        for line in await store.transcript(key)
    ]


async def stored_stateless(store: Store) -> dict[str, list[tuple[str, str | None, str]]]:
    return {s.key: await lines(store, s.key) for s in await store.sessions("http")}


SESSION = {"X-Hermes-Session": "tools"}


async def test_a_run_abandoned_for_a_new_message_ends_failed(
    serve_tools: ServeHttp, store: Store
) -> None:
    _, platform = await serve_tools()
    called = await ask(platform, user("call get_weather"), extra_headers=SESSION)
    assert called.choices[0].finish_reason == "tool_calls"
    await ask(platform, user("never mind"), offer=False, extra_headers=SESSION)
    await platform.chats.suspended.settled()
    assert await lines(store, "http:tools") == [
        ("user", "call get_weather", "failed"),
        ("user", "never mind", "answered"),
        ("assistant", "[tool-model] never mind (user messages: 1)", "answered"),
    ]


@SQLITE_ONLY
async def test_a_run_resumed_in_time_ends_answered(serve_tools: ServeHttp, store: Store) -> None:
    _, platform = await serve_tools()
    called = await ask(platform, user("call get_weather"), extra_headers=SESSION)
    [call] = called.choices[0].message.tool_calls or []
    result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    await ask(platform, [result], extra_headers=SESSION)
    await platform.chats.suspended.settled()
    assert await lines(store, "http:tools") == [
        ("user", "call get_weather", "answered"),
        ("assistant", None, "answered"),
        ("tool", "sunny", "answered"),
        ("assistant", "tool results: sunny", "answered"),
    ]


@SQLITE_ONLY
async def test_a_stateless_run_pushed_out_ends_failed_and_the_newer_one_still_waits(
    serve_tools: ServeHttp, store: Store
) -> None:
    _, platform = await serve_tools(max_suspended_runs=1)
    await ask(platform, user("call get_weather"))
    await ask(platform, user('call get_weather {"city": "Oslo"}'))
    await platform.chats.suspended.settled()
    statuses = {tuple(t) for t in (await stored_stateless(store)).values()}
    assert statuses == {
        (("user", "call get_weather", "failed"),),
        (("user", 'call get_weather {"city": "Oslo"}', "pending"),),
    }


@SQLITE_ONLY
async def test_an_unrecorded_stateless_run_pushed_out_writes_nothing(
    serve_tools: ServeHttp, store: Store, errors_logged: list[str]
) -> None:
    _, platform = await serve_tools(max_suspended_runs=1, record_stateless=False)
    await ask(platform, user("call get_weather"))
    await ask(platform, user("call get_weather"))
    await platform.chats.suspended.settled()
    assert await store.sessions("http") == [] and errors_logged == []


async def test_runs_still_waiting_at_shutdown_end_failed(
    serve_tools: ServeHttp, store: Store
) -> None:
    _, platform = await serve_tools()
    await ask(platform, user("call get_weather"), extra_headers=SESSION)
    await ask(platform, user("call get_weather"))
    await platform.stop()
    transcripts = await stored_stateless(store)
    assert len(transcripts) == 2
    assert all(t == [("user", "call get_weather", "failed")] for t in transcripts.values())


@SQLITE_ONLY
@pytest.mark.slow  # waits out the shortest TTL the setting allows (1 s)
async def test_a_run_left_to_expire_ends_failed_without_another_request(
    serve_tools: ServeHttp, store: Store
) -> None:
    _, platform = await serve_tools(suspended_run_ttl_s=1)
    await ask(platform, user("call get_weather"), extra_headers=SESSION)
    assert await lines(store, "http:tools") == [("user", "call get_weather", "pending")]
    await wait_for_status(store, "http:tools", "failed", within_s=10)


async def wait_for_status(store: Store, key: str, status: str, within_s: float) -> None:
    """Wait until the first line of session ``key`` has ``status``."""
    async with asyncio.timeout(within_s):
        while (await lines(store, key))[0][2] != status:
            await asyncio.sleep(0.05)


# --- a stateless continuation no run waits for --------------------------------------------------


async def test_a_stateless_continuation_no_run_waits_for_stores_each_message_once(
    serve_tools: ServeHttp, store: Store, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_tools(max_suspended_runs=1)
    first = await ask(platform, user("call get_weather"))
    await ask(platform, user('call get_weather {"city": "Oslo"}'))  # pushes the first out
    message = first.choices[0].message
    [call] = message.tool_calls or []
    calling = message.model_dump(exclude_none=True)
    answered = await ask(
        platform,
        [
            *user("call get_weather"),
            calling,
            {"role": "tool", "tool_call_id": call.id, "content": "hail"},
        ],
    )
    assert answered.choices[0].message.content == "tool results: hail"
    assert [m["role"] for m in fake_openai.requests[-1].messages] == ["user", "assistant", "tool"]
    await platform.chats.suspended.settled()
    transcripts = list((await stored_stateless(store)).values())
    contents = [content for transcript in transcripts for _, content, _ in transcript]
    assert contents.count("call get_weather") == 1, "the user's message is stored once"
    assert [
        ("assistant", None, "answered"),
        ("tool", "hail", "answered"),
        ("assistant", "tool results: hail", "answered"),
    ] in transcripts, "the call, the client's result and the answer are all stored"
    [stored_calls] = [
        line.message["tool_calls"]
        for summary in await store.sessions("http")
        for line in await store.transcript(summary.key)
        if "tool_calls" in line.message
    ]
    assert [stored["id"] for stored in stored_calls] == [call.id]


@SQLITE_ONLY
async def test_stateless_tool_results_without_the_call_they_answer_are_a_400(
    serve_tools: ServeHttp, store: Store, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_tools()
    body = {"messages": [*user("hi"), {"role": "tool", "tool_call_id": "call_1", "content": "x"}]}
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages"
    assert "no run is waiting for them" in error["message"]
    assert fake_openai.requests == [] and await store.sessions("http") == []


@SQLITE_ONLY
async def test_a_stateless_continuation_of_several_tool_rounds_stores_every_round(
    serve_tools: ServeHttp, store: Store
) -> None:
    _, platform = await serve_tools()

    def round_of(call_id: str, result: str) -> list[dict[str, Any]]:
        call = {"id": call_id, "type": "function", "function": {"name": "get_weather"}}
        calling = {"role": "assistant", "content": None, "tool_calls": [call]}
        return [calling, {"role": "tool", "tool_call_id": call_id, "content": result}]

    earlier = [*user("an earlier turn"), {"role": "assistant", "content": "its answer"}]
    rounds = [*round_of("call_a", "rain"), *round_of("call_b", "wind")]
    answered = await ask(platform, [*earlier, *user("weather twice"), *rounds])
    assert answered.choices[0].message.content == "tool results: wind"
    [transcript] = (await stored_stateless(store)).values()
    assert transcript == [
        ("assistant", None, "answered"),
        ("tool", "rain", "answered"),
        ("assistant", None, "answered"),
        ("tool", "wind", "answered"),
        ("assistant", "tool results: wind", "answered"),
    ]
