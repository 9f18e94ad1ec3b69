"""The ``http`` platform in-process: the official ``openai`` client against a real uvicorn
server in the test's event loop, backed by the scripted OpenAI server."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from helpers_http import KEY, client_for, user

from hermes_core.asgi import listen
from hermes_core.errors import ConfigError
from hermes_core.platforms import REFUSAL, session_key
from hermes_core.plugins.http import HttpPlatform
from hermes_core.plugins.http_settings import ApiKey
from hermes_core.testing import FakeOpenAI, ServeHttp, settings_for

# --- the official client -------------------------------------------------------------------


async def test_openai_client_non_streaming_chat(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        completion = await client.chat.completions.create(model="any", messages=user("hello"))
    assert completion.object == "chat.completion"
    assert completion.model == "local:ok-primary"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "[ok-primary] hello (user messages: 1)"
    assert completion.choices[0].finish_reason == "stop"


async def test_openai_client_streaming_chat(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        stream = await client.chat.completions.create(
            model="any", messages=user("tell me a story about streams"), stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(contents) > 1, "the reply should arrive in several chunks"
    assert "".join(contents) == "[ok-primary] tell me a story about streams (user messages: 1)"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_stream_is_server_sent_events_ending_with_done(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    body = {"model": "any", "stream": True, "messages": user("hi")}
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][len("data: ") :])["choices"][0]["finish_reason"] == "stop"


async def test_missing_or_wrong_key_gets_401_and_never_runs(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(api_keys=[KEY, "sk-other"])
    async with client_for(platform, api_key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as wrong:
            await client.chat.completions.create(model="any", messages=user("hi"))
        with pytest.raises(openai.AuthenticationError) as missing:
            await client.chat.completions.create(
                model="any", messages=user("hi"), extra_headers={"Authorization": openai.omit}
            )
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    assert wrong.value.status_code == missing.value.status_code == 401
    assert wrong.value.code == missing.value.code == "invalid_api_key"
    assert "invalid API key" in wrong.value.message
    assert "missing API key" in missing.value.message
    assert fake_openai.requests == []
    async with client_for(platform, api_key="sk-other") as client:
        completion = await client.chat.completions.create(model="any", messages=user("hi"))
    assert completion.choices[0].message.content == "[ok-primary] hi (user messages: 1)"


async def test_api_keys_can_come_from_an_environment_variable(
    serve_http: ServeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERMES_TEST_HTTP_KEYS", "sk-a, sk-b")
    _, platform = await serve_http(api_keys_env="HERMES_TEST_HTTP_KEYS")
    async with client_for(platform, api_key="sk-b") as client:
        assert (await client.models.list()).data
    async with client_for(platform, api_key=KEY) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_sessions_by_header_keep_separate_histories(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()

    async def say(session: str, text: str) -> str:
        completion = await client.chat.completions.create(
            model="any", messages=user(text), extra_headers={"X-Hermes-Session": session}
        )
        return completion.choices[0].message.content or ""

    async with client_for(platform) as client:
        assert await say("alice", "a1") == "[ok-primary] a1 (user messages: 1)"
        assert await say("bob", "b1") == "[ok-primary] b1 (user messages: 1)"
        assert await say("alice", "a2") == "[ok-primary] a2 (user messages: 2)"
        assert await say("bob", "b2") == "[ok-primary] b2 (user messages: 2)"
        assert await say("alice", "a3") == "[ok-primary] a3 (user messages: 3)"


async def test_in_a_session_only_the_last_user_message_is_new_input(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http()
    messages: list[Any] = [
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": [{"type": "text", "text": "new question"}]},
    ]
    async with client_for(platform) as client:
        completion = await client.chat.completions.create(
            model="any", messages=messages, extra_headers={"X-Hermes-Session": "mine"}
        )
    assert completion.choices[0].message.content == "[ok-primary] new question (user messages: 1)"
    sent = fake_openai.requests[0].messages
    assert [m["content"] for m in sent if m["role"] == "user"] == ["new question"]


async def test_user_field_is_the_session_when_there_is_no_header(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        for expected in (1, 2):
            raw = await client.chat.completions.with_raw_response.create(
                model="any", messages=user("hey"), user="carol"
            )
            assert raw.headers["x-hermes-session"] == "carol"
            assert raw.parse().choices[0].message.content.endswith(f"(user messages: {expected})")


async def test_failed_run_is_200_with_the_error_kind_header(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(settings_for(fake_openai.url, "bad-primary"))
    async with client_for(platform) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="any", messages=user("hi")
        )
        assert raw.status_code == 200
        assert raw.headers["x-hermes-error-kind"] == "non_retryable"
        assert "does not exist" in (raw.parse().choices[0].message.content or "")
        ok = await client.chat.completions.with_raw_response.create(
            model="any", messages=user("hi"), extra_headers={"X-Hermes-Session": "fine"}
        )
    assert ok.headers["x-hermes-error-kind"] == "non_retryable"  # same model, same failure


async def test_successful_run_has_no_error_kind_header(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(settings_for(fake_openai.url, "bad-primary", ["ok-fallback"]))
    async with client_for(platform) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="any", messages=user("hi"), stream=True
        )
        assert "x-hermes-error-kind" not in raw.headers
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse()])
    assert text == "[ok-fallback] hi (user messages: 1)"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"model": "x"}', "`messages` must be a non-empty list"),
        (b'{"messages": []}', "`messages` must be a non-empty list"),
        (b'{"messages": ["hi"]}', "messages[0] must be an object"),
        (b'{"messages": [{"role": "assistant", "content": "x"}]}', "no user message"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "must be a string or a list"),
        (b'{"messages": [{"role": "user", "content": "  "}]}', "is empty"),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
            "only text parts",
        ),
        (b'{"stream": "yes", "messages": [{"role": "user", "content": "x"}]}', "`stream`"),
        (b'{"user": 7, "messages": [{"role": "user", "content": "x"}]}', "`user`"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_malformed_requests_get_400_with_a_clear_message(
    serve_http: ServeHttp, fake_openai: FakeOpenAI, body: bytes, problem: str
) -> None:
    _, platform = await serve_http()
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        response = await http.post("/v1/chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert problem in error["message"]
    assert error["type"] == "invalid_request_error"
    assert fake_openai.requests == []


async def test_session_header_is_validated(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"messages": user("x")},
            headers={"X-Hermes-Session": "x" * 300},
        )
    assert response.status_code == 400
    assert "X-Hermes-Session" in response.json()["error"]["message"]


async def test_request_body_size_is_limited(serve_http: ServeHttp, fake_openai: FakeOpenAI) -> None:
    _, platform = await serve_http(max_body_bytes=2000)
    big = {"messages": user("x" * 3000)}

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        data = json.dumps(big).encode()
        for start in range(0, len(data), 500):
            yield data[start : start + 500]

    async with httpx2.AsyncClient(base_url=platform.url) as http:
        declared = await http.post("/v1/chat/completions", json=big)
        streamed = await http.post("/v1/chat/completions", content=chunked())
        small = await http.post("/v1/chat/completions", json={"messages": user("small")})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
    assert small.status_code == 200
    assert len(fake_openai.requests) == 1


async def test_models_lists_the_configured_chain_and_health_needs_no_key(
    serve_http: ServeHttp,
    fake_openai: FakeOpenAI,
) -> None:
    _, platform = await serve_http(
        settings_for(fake_openai.url, "ok-primary", ["ok-fallback"]), api_keys=[KEY]
    )
    async with client_for(platform) as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == ["local:ok-primary", "local:ok-fallback"]
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        health = await http.get("/health")
        unknown = await http.get("/v1/nope")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


async def test_allow_users_refuses_others_politely_without_a_run(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(allow_users=["alice"])
    async with client_for(platform) as client:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(model="any", messages=user("hi"), user="mallory")
        assert fake_openai.requests == []
        ok = await client.chat.completions.create(model="any", messages=user("hi"), user="alice")
    assert refused.value.status_code == 403
    assert "Sorry" in refused.value.message
    assert ok.choices[0].message.content == "[ok-primary] hi (user messages: 1)"
    assert len(fake_openai.requests) == 1


async def test_non_loopback_host_without_keys_is_refused_at_build_time(
    make_gateway: Any,
) -> None:
    gateway = await make_gateway()
    with pytest.raises(ConfigError) as refused:
        HttpPlatform(gateway, {"host": "0.0.0.0"})
    assert refused.value.key == "platforms.http.host"
    assert "without API keys" in str(refused.value)
    assert "\n" not in str(refused.value)
    HttpPlatform(gateway, {"host": "0.0.0.0", "api_keys": [KEY]})  # keys make it acceptable
    HttpPlatform(gateway, {"host": "::1"})
    HttpPlatform(gateway, {"host": "localhost"})


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"port": "80"}, "platforms.http.port"),
        ({"port": 70000}, "platforms.http.port"),
        ({"api_keys": "sk-1"}, "platforms.http.api_keys"),
        ({"api_keys_env": "HERMES_TEST_UNSET_KEYS"}, "platforms.http.api_keys_env"),
        ({"allow_users": [1]}, "platforms.http.allow_users"),
        ({"max_body_bytes": 0}, "platforms.http.max_body_bytes"),
        ({"stop_grace_s": -1}, "platforms.http.stop_grace_s"),
        ({"header_timeout_s": 0}, "platforms.http.header_timeout_s"),
        ({"header_timeout_s": 86400}, "platforms.http.header_timeout_s"),
        ({"host": "[::1"}, "platforms.http.host"),
        ({"host": "[localhost]"}, "platforms.http.host"),
        ({"api_keys": [["sk-nested"]]}, "platforms.http.api_keys"),
        ({"api_keys": [{"name": "a"}]}, "platforms.http.api_keys[0].key_env"),
        ({"api_keys": [{"name": "a", "key_env": "HERMES_TEST_UNSET_KEY"}]},
         "platforms.http.api_keys[0].key_env"),
        ({"api_keys": [{"name": "a:b", "key_env": "HERMES_TEST_ALICE_KEY"}]},
         "platforms.http.api_keys[0].name"),
        ({"api_keys": [{"name": "a", "key": "sk-inline"}]}, "platforms.http.api_keys[0]"),
        ({"api_keys": [{"name": "a", "key_env": "HERMES_TEST_ALICE_KEY"},
                       {"name": "a", "key_env": "HERMES_TEST_BOB_KEY"}]},
         "platforms.http.api_keys"),
        ({"api_keys": ["sk-same", "sk-same"]}, "platforms.http.api_keys"),
    ],
)  # fmt: skip
async def test_bad_settings_are_config_errors_naming_the_key(
    make_gateway: Any, table: dict[str, Any], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERMES_TEST_ALICE_KEY", "sk-alice-secret")
    monkeypatch.setenv("HERMES_TEST_BOB_KEY", "sk-bob-secret")
    gateway = await make_gateway()
    with pytest.raises(ConfigError) as error:
        HttpPlatform(gateway, table)
    assert error.value.key == key
    assert "sk-" not in str(error.value), "a key must never be shown"


# --- the seed scenario over HTTP -------------------------------------------------------------


async def test_seed_scenario_over_http(serve_http: ServeHttp, fake_openai: FakeOpenAI) -> None:
    gateway, platform = await serve_http(
        settings_for(fake_openai.url, "bad-primary", ["bad-fallback"])
    )
    headers = {"X-Hermes-Session": "seed"}

    async def say(text: str) -> tuple[str, str | None]:
        raw = await client.chat.completions.with_raw_response.create(
            model="any", messages=user(text), extra_headers=headers
        )
        return raw.parse().choices[0].message.content or "", raw.headers.get("x-hermes-error-kind")

    async with client_for(platform) as client:
        text, kind = await say("one")
        assert kind == "non_retryable"
        assert "does not exist" in text
        agent = gateway.cache.get("http:seed")
        assert agent is not None
        await say("two")
        assert gateway.cache.get("http:seed") is agent, "a failed run must keep its agent"
        await say("three")
        assert len(fake_openai.requests) == 6  # primary and fallback, three times

        text, kind = await say("four")
        assert kind == "circuit_open"
        assert "3" in text
        assert "/reset" in text
        assert len(fake_openai.requests) == 6, "the open breaker must not call the LLM"

        text, kind = await say("/reset")
        assert kind is None
        assert "new conversation" in text
        text, kind = await say("five")
        assert kind == "non_retryable", "after /reset the LLM is called again"
        assert len(fake_openai.requests) == 8


# --- concurrency ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_200_concurrent_requests_across_50_sessions(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http()
    sessions, per_session = 50, 4

    async def ask(http: httpx2.AsyncClient, session: int, n: int) -> tuple[int, int, str]:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "any", "messages": user(f"s{session}-m{n}")},
            headers={"X-Hermes-Session": f"s{session}"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-hermes-session"] == f"s{session}"
        assert "x-hermes-error-kind" not in response.headers
        return session, n, response.json()["choices"][0]["message"]["content"]

    limits = httpx2.Limits(max_connections=200)
    async with httpx2.AsyncClient(base_url=platform.url, timeout=60, limits=limits) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(ask(http, s, n) for n in range(per_session) for s in range(sessions))
        )
        elapsed = loop.time() - started
    total = sessions * per_session
    print(f"\n{total} requests over {sessions} sessions in {elapsed:.2f}s: {total / elapsed:.0f}/s")

    # Every reply echoes its own message: nothing crossed sessions.
    for session, n, text in results:
        assert text.startswith(f"[ok-primary] s{session}-m{n} (user messages: ")
    # Runs of one session happened one at a time and in order: each request the model saw
    # carries exactly the earlier messages of its session, and the counts are 1..4.
    by_session: dict[str, list[list[str]]] = {}
    for request in fake_openai.requests:
        users = [m["content"] for m in request.messages if m["role"] == "user"]
        by_session.setdefault(users[-1].split("-")[0], []).append(users)
    assert len(by_session) == sessions
    for history in by_session.values():
        assert [len(users) for users in history] == list(range(1, per_session + 1))
        for earlier, later in itertools.pairwise(history):
            assert later[:-1] == earlier
    for name, history in by_session.items():
        assert sorted(history[-1]) == [f"{name}-m{n}" for n in range(per_session)]


# --- stopping ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_stop_finishes_the_run_in_flight_refuses_new_ones_and_leaks_nothing(
    make_gateway: Any, fake_openai: FakeOpenAI
) -> None:
    table = {"enabled": True, "port": 0}
    gateway = await make_gateway(settings_for(fake_openai.url, "slow-1-primary"))
    before = asyncio.all_tasks()
    platform = HttpPlatform(gateway, table)
    await platform.start()
    async with httpx2.AsyncClient(base_url=platform.url, timeout=30) as http:
        in_flight = asyncio.create_task(
            http.post("/v1/chat/completions", json={"messages": user("finish me")})
        )
        while not fake_openai.requests:  # the run has reached the model
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(platform.stop())
        while platform.intake.accepting:
            await asyncio.sleep(0.01)
        async with httpx2.AsyncClient(base_url=platform.url, timeout=30) as late_client:
            late = await late_client.post("/v1/chat/completions", json={"messages": user("late")})
            health = await late_client.get("/health")
        response = await in_flight
        await stopping
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("[slow-1-primary]")
    assert late.status_code == 503
    assert late.json()["error"]["code"] == "shutting_down"
    assert health.status_code == 503
    assert len(fake_openai.requests) == 1
    with pytest.raises(httpx2.ConnectError):
        async with httpx2.AsyncClient(base_url=platform.url) as http:
            await http.get("/health")
    await platform.wait_closed()
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
    await platform.stop()  # idempotent


# --- sessions belong to API keys -----------------------------------------------------------------


async def test_two_keys_naming_the_same_session_get_two_sessions(
    serve_http: ServeHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERMES_TEST_ALICE_KEY", "sk-alice")
    named = {"name": "alice", "key_env": "HERMES_TEST_ALICE_KEY"}
    gateway, platform = await serve_http(api_keys=[KEY, named])

    async def say(api_key: str, text: str) -> tuple[str, str]:
        async with client_for(platform, api_key) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="any", messages=user(text), extra_headers={"X-Hermes-Session": "shared"}
            )
        return raw.headers["x-hermes-session"], raw.parse().choices[0].message.content or ""

    assert await say(KEY, "mine") == ("shared", "[ok-primary] mine (user messages: 1)")
    # The other key's client names the same session: a fresh one, the first is not visible.
    assert await say("sk-alice", "hers") == ("shared", "[ok-primary] hers (user messages: 1)")
    assert await say("sk-alice", "again") == ("shared", "[ok-primary] again (user messages: 2)")
    assert await say(KEY, "mine too") == ("shared", "[ok-primary] mine too (user messages: 2)")
    plain = ApiKey.plain(KEY).name
    assert {session_key("http", "shared", "alice"), session_key("http", "shared", plain)} <= set(
        gateway.cache
    )
    assert "http:shared" not in gateway.cache


def test_a_plain_key_is_named_by_a_short_hash_stable_under_reordering() -> None:
    names = {ApiKey.plain("sk-one").name, ApiKey.plain("sk-two").name}
    assert len(names) == 2
    assert ApiKey.plain("sk-one").name == ApiKey.plain("sk-one").name
    for name in names:
        assert name.startswith("key-") and "sk-" not in name
    assert "sk-one" not in repr(ApiKey.plain("sk-one"))


# --- the refusal, the bind check, slow clients ---------------------------------------------------


async def test_the_403_refusal_is_the_intakes_one_documented_text(serve_http: ServeHttp) -> None:
    _, platform = await serve_http(allow_users=["alice"])
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        response = await http.post("/v1/chat/completions", json={"messages": user("hi")})
    assert response.status_code == 403
    assert response.json()["error"] == {
        "message": REFUSAL,
        "type": "permission_error",
        "param": None,
        "code": "user_not_allowed",
    }


async def test_check_binds_the_address_and_names_the_port_when_taken(make_gateway: Any) -> None:
    gateway = await make_gateway()
    taken = listen("127.0.0.1", 0, 1)
    try:
        port = taken.getsockname()[1]
        refused = await HttpPlatform(gateway, {"port": port}).check()
        [problem] = refused.problems
        assert problem.startswith(f"cannot listen on 127.0.0.1:{port}")
    finally:
        taken.close()
    found = await HttpPlatform(gateway, {"port": port, "api_keys": [KEY]}).check()
    assert (found.problems, found.summary) == ([], f"can listen on 127.0.0.1:{port} (1 API key(s))")
    # check() released the port again: the platform itself can now start on it.
    platform = HttpPlatform(gateway, {"port": port})
    await platform.start()
    await platform.stop()


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within_s) == b""
    except TimeoutError:
        return False


@pytest.mark.slow
async def test_a_connection_without_complete_headers_is_closed_after_header_timeout_s(
    serve_http: ServeHttp,
) -> None:
    _, platform = await serve_http(header_timeout_s=0.5)
    assert platform.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.port)
    try:
        writer.write(b"POST /v1/chat/completions HTT")
        await writer.drain()
        started = asyncio.get_running_loop().time()
        assert await _closed_by_server(reader, 10), "the half-open connection was kept"
        assert asyncio.get_running_loop().time() - started >= 0.4
    finally:
        writer.close()


@pytest.mark.slow
async def test_the_header_deadline_spares_slow_runs_and_returns_after_each_response(
    serve_http: ServeHttp,
    fake_openai: FakeOpenAI,
) -> None:
    """A run longer than header_timeout_s is answered; the next request on the same
    connection gets the deadline again."""
    _, platform = await serve_http(
        settings_for(fake_openai.url, "slow-1-primary"), header_timeout_s=0.5
    )
    assert platform.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.port)
    try:
        data = json.dumps({"messages": user("slow")}).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            + f"\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        assert length is not None
        answer = json.loads(await reader.readexactly(int(length.group(1))))
        assert answer["choices"][0]["message"]["content"].startswith("[slow-1-primary] slow")
        writer.write(b"GET /hea")  # half a second request on the kept-alive connection
        await writer.drain()
        assert await _closed_by_server(reader, 10), "the stalled second request was kept"
    finally:
        writer.close()


@pytest.mark.slow
async def test_sse_forwards_each_chunk_as_the_upstream_sends_it(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(
        settings_for(fake_openai.url, "stream-10-100-model"), api_keys=[KEY]
    )
    arrivals: list[tuple[float, str]] = []
    body = {"model": "any", "stream": True, "messages": user("hello")}
    headers = {"Authorization": f"Bearer {KEY}", "X-Hermes-Session": "sse"}
    loop = asyncio.get_running_loop()
    async with (
        httpx2.AsyncClient(timeout=30) as client,
        client.stream(
            "POST", f"{platform.url}/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        started = loop.time()
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    arrivals.append((loop.time() - started, delta["content"]))
    text = "".join(piece for _, piece in arrivals)
    assert text == "[stream-10-100-model] hello (user messages: 1)"
    assert len(arrivals) >= 10
    # The upstream sends a chunk every 100 ms: the first reached the client long before the
    # last was sent, and the chunks arrived spread over the upstream's second, not at once.
    assert arrivals[0][0] < 0.5 and arrivals[-1][0] - arrivals[0][0] > 0.6
