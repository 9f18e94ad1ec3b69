"""The http platform as a drop-in OpenAI endpoint: model lookup, trailing slashes, CORS,
response fields, usage, and request parameters forwarded or refused — driven by the
official ``openai`` client (sync and async) against the scripted upstream over real HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from helpers_http import KEY, client_for, sync_client_for, user

from hermes_core.errors import ConfigError
from hermes_core.plugins import openai_wire as wire
from hermes_core.plugins.http import HttpPlatform
from hermes_core.testing import FakeOpenAI, ServeHttp, settings_for

# --- the surface clients touch -------------------------------------------------------------


async def test_a_model_of_the_chain_is_retrieved_by_id_and_another_is_a_404(
    serve_http: ServeHttp,
    fake_openai: FakeOpenAI,
) -> None:
    _, platform = await serve_http(settings_for(fake_openai.url, "ok-primary", ["ok-fallback"]))
    async with client_for(platform) as client:
        model = await client.models.retrieve("local:ok-fallback")
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.models.retrieve("gpt-4o")
    assert (model.id, model.object, model.owned_by) == ("local:ok-fallback", "model", "local")
    assert unknown.value.status_code == 404
    assert unknown.value.code == "model_not_found"
    assert "gpt-4o" in unknown.value.message


async def test_every_route_answers_with_a_trailing_slash_instead_of_a_redirect(
    serve_http: ServeHttp,
) -> None:
    _, platform = await serve_http()
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        chat = await http.post("/v1/chat/completions/", json={"messages": user("hi")})
        models = await http.get("/v1/models/")
        model = await http.get("/v1/models/local:ok-primary/")
        health = await http.get("/health/")
    assert [r.status_code for r in (chat, models, model, health)] == [200] * 4
    assert chat.json()["choices"][0]["message"]["content"] == "[ok-primary] hi (user messages: 1)"
    assert model.json()["id"] == "local:ok-primary"


async def test_cors_preflight_is_answered_for_a_configured_origin_only(
    serve_http: ServeHttp,
) -> None:
    _, platform = await serve_http(cors_origins=["https://app.example.com"], api_keys=[KEY])
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang",
    }
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        allowed = await http.options(
            "/v1/chat/completions", headers={"Origin": "https://app.example.com", **preflight}
        )
        other = await http.options(
            "/v1/chat/completions", headers={"Origin": "https://evil.example", **preflight}
        )
        chat = await http.post(
            "/v1/chat/completions",
            json={"messages": user("hi")},
            headers={"Origin": "https://app.example.com", "Authorization": f"Bearer {KEY}"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "x-stainless-lang" in allowed.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert chat.status_code == 200
    assert chat.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "X-Hermes-Session" in chat.headers["access-control-expose-headers"]


async def test_without_cors_origins_no_origin_is_allowed(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        preflight = await http.options(
            "/v1/chat/completions",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
        chat = await http.post(
            "/v1/chat/completions",
            json={"messages": user("hi")},
            headers={"Origin": "https://app.example.com"},
        )
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in chat.headers


async def test_a_completion_names_the_model_that_answered_with_id_created_and_fingerprint(
    serve_http: ServeHttp,
    fake_openai: FakeOpenAI,
) -> None:
    _, platform = await serve_http(settings_for(fake_openai.url, "bad-primary", ["ok-fallback"]))
    async with client_for(platform) as client:
        first = await client.chat.completions.create(model="anything", messages=user("hi"))
        second = await client.chat.completions.create(model="anything", messages=user("hi"))
    assert first.model == "local:ok-fallback"
    assert first.id.startswith("chatcmpl-") and first.id != second.id
    assert first.created > 0
    assert first.system_fingerprint == wire.SYSTEM_FINGERPRINT


# --- usage -----------------------------------------------------------------------------------


async def test_a_non_streamed_response_carries_the_runs_usage(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        completion = await client.chat.completions.create(model="any", messages=user("count me"))
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_a_command_reply_has_zero_usage_not_none(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        completion = await client.chat.completions.create(
            model="any", messages=user("/help"), extra_headers={"X-Hermes-Session": "s"}
        )
    assert completion.usage is not None
    assert completion.usage.total_tokens == 0


async def test_include_usage_streams_a_last_chunk_with_usage_and_no_choices(
    serve_http: ServeHttp,
) -> None:
    _, platform = await serve_http()

    def streamed() -> list[Any]:
        with sync_client_for(platform) as client:
            stream = client.chat.completions.create(
                model="any",
                messages=user("stream me"),
                stream=True,
                stream_options={"include_usage": True},
            )
            return list(stream)

    chunks = await asyncio.to_thread(streamed)
    assert {chunk.model for chunk in chunks} == {"local:ok-primary"}
    *text_chunks, last = chunks
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens > 0
    assert all(chunk.usage is None for chunk in text_chunks)
    assert text_chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in text_chunks)
    assert text == "[ok-primary] stream me (user messages: 1)"


async def test_without_include_usage_a_stream_has_no_usage_chunk(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    body = {"model": "any", "stream": True, "messages": user("hi")}
    async with httpx2.AsyncClient(base_url=platform.url) as http:
        response = await http.post("/v1/chat/completions", json=body)
    events = [json.loads(e[6:]) for e in response.text.split("\n\n") if e and "[DONE]" not in e]
    assert all(event["choices"] for event in events)
    assert all("usage" not in event for event in events)


# --- parameters ------------------------------------------------------------------------------


async def test_max_tokens_reaches_the_upstream_and_its_length_finish_reason_comes_back(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        completion = await client.chat.completions.create(
            model="any", messages=user("a long question to answer"), max_tokens=3
        )
    assert fake_openai.requests[0].params == {"max_tokens": 3}
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "[ok-primary] a long "


async def test_sampling_parameters_are_forwarded_to_the_upstream_as_sent(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http()
    sent: dict[str, Any] = {
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "reasoning_effort": "low",
        "metadata": {"app": "test"},
        "max_completion_tokens": 50,
    }

    def create() -> None:
        with sync_client_for(platform) as client:
            client.chat.completions.create(model="any", messages=user("hi"), **sent)

    await asyncio.to_thread(create)
    assert fake_openai.requests[0].params == sent


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy"}}, "modalities"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"frobnicate": True}, "frobnicate"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
async def test_a_parameter_that_cannot_be_honoured_is_a_400_naming_it(
    serve_http: ServeHttp, fake_openai: FakeOpenAI, fields: dict[str, Any], param: str
) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="any", messages=user("hi"), extra_body=fields
            )
    assert refused.value.status_code == 400
    assert refused.value.param == param
    assert param in refused.value.message
    assert fake_openai.requests == []


async def test_n_2_is_refused_through_the_clients_own_argument(serve_http: ServeHttp) -> None:
    _, platform = await serve_http()
    async with client_for(platform) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="any", messages=user("hi"), n=2)
        one = await client.chat.completions.create(model="any", messages=user("hi"), n=1)
    assert refused.value.param == "n"
    assert len(one.choices) == 1


async def test_the_operator_pins_defaults_and_forbids_parameters(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    policy = {"pin": {"temperature": 0}, "default": {"max_tokens": 512}, "forbid": ["seed"]}
    gateway, platform = await serve_http(parameters=policy)
    assert gateway.unknown_settings == [], "the table's keys are the policy's, not unknown"
    async with client_for(platform) as client:
        await client.chat.completions.create(model="any", messages=user("a"), temperature=1.5)
        await client.chat.completions.create(model="any", messages=user("b"), max_tokens=9)
        with pytest.raises(openai.BadRequestError) as forbidden:
            await client.chat.completions.create(model="any", messages=user("c"), seed=1)
    assert [r.params for r in fake_openai.requests] == [
        {"temperature": 0, "max_tokens": 512},
        {"temperature": 0, "max_tokens": 9},
    ]
    assert forbidden.value.param == "seed"
    assert "platforms.http.parameters.forbid" in forbidden.value.message


@pytest.mark.parametrize(
    ("parameters", "key"),
    [
        ("temperature=0", "platforms.http.parameters"),
        ({"pin": {"temperature": "hot"}}, "platforms.http.parameters.pin.temperature"),
        ({"default": {"n": 2}}, "platforms.http.parameters.default.n"),
        ({"forbid": ["nonsense"]}, "platforms.http.parameters.forbid"),
        ({"forbid": ["seed"], "pin": {"seed": 1}}, "platforms.http.parameters.forbid"),
        ({"pinned": {}}, "platforms.http.parameters.pinned"),
    ],
)
async def test_a_bad_parameters_table_is_a_config_error_naming_the_key(
    make_gateway: Any, parameters: Any, key: str
) -> None:
    gateway = await make_gateway()
    with pytest.raises(ConfigError) as error:
        HttpPlatform(gateway, {"parameters": parameters})
    assert error.value.key == key
    assert "\n" not in str(error.value)


async def test_bad_cors_origins_are_a_config_error(make_gateway: Any) -> None:
    gateway = await make_gateway()
    with pytest.raises(ConfigError) as error:
        HttpPlatform(gateway, {"cors_origins": ["https://app.example.com/"]})
    assert error.value.key == "platforms.http.cors_origins"


class Person(pydantic.BaseModel):
    name: str
    age: int


async def test_parse_with_a_pydantic_response_format_sends_the_schema_and_parses(
    serve_http: ServeHttp, fake_openai: FakeOpenAI
) -> None:
    _, platform = await serve_http(settings_for(fake_openai.url, "say-json"))
    async with client_for(platform) as client:
        completion = await client.chat.completions.parse(
            model="any", messages=user('{"name": "Ada", "age": 36}'), response_format=Person
        )
    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)
    response_format = fake_openai.requests[0].params["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Person"
    assert response_format["json_schema"]["schema"]["required"] == ["name", "age"]
