"""The OpenAI wire format as pure functions: request bytes in, a ChatRequest or an ApiError
naming the field out; completions, stream chunks and error bodies rendered. No server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hermes_core.platforms import session_key, session_owner
from hermes_core.plugins import openai_wire as wire
from hermes_core.plugins import strict_json

HI = [{"role": "user", "content": "hi"}]


def body(**fields: Any) -> bytes:
    return json.dumps({"messages": HI, **fields}).encode()


def refused(data: bytes, session_header: str | None = None) -> wire.ApiError:
    with pytest.raises(wire.ApiError) as error:
        wire.parse_chat(data, session_header)
    assert error.value.status == 400
    return error.value


# --- requests ----------------------------------------------------------------------------------


def test_a_request_names_its_session_by_header_then_by_user() -> None:
    by_header = wire.parse_chat(body(user="carol"), "project-1")
    assert (by_header.session_id, by_header.user, by_header.text) == ("project-1", "carol", "hi")
    assert wire.parse_chat(body(user="carol")).session_id == "carol"
    assert wire.parse_chat(body()).session_id is None


def test_body_nested_100000_deep_is_refused_naming_the_field() -> None:
    deep = b'{"messages": [{"role": "user", "content": "hi"}], "metadata": '
    deep += b"[" * 100_000 + b"]" * 100_000 + b"}"
    error = refused(deep)
    assert error.param == "metadata"
    assert f"`metadata` is nested deeper than {strict_json.MAX_DEPTH} levels" in error.message


def test_nesting_up_to_the_limit_is_accepted() -> None:
    # The body, tools, the tool, function and parameters are five levels.
    depth = strict_json.MAX_DEPTH - 5
    data = b'{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", '
    data += b'"function": {"name": "t", "parameters": {"deep": '
    data += b"[" * depth + b"]" * depth + b"}}}]}"
    assert wire.parse_chat(data).text == "hi"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[{" * 500
    assert wire.parse_chat(json.dumps({"messages": [{"role": "user", "content": text}]}).encode())


@pytest.mark.parametrize(
    ("data", "param", "where"),
    [
        (b'{"seed": ' + b"9" * 5000 + b', "messages": []}', "seed", "`seed`"),
        (
            b'{"messages": [{"role": "user", "content": -' + b"1" * 5000 + b"}]}",
            "messages",
            "messages[0].content",
        ),
    ],
)
def test_an_integer_of_5000_digits_is_refused_naming_the_field(
    data: bytes, param: str, where: str
) -> None:
    error = refused(data)
    assert error.param == param
    assert f"{where} is an integer of 5000 digits" in error.message


@pytest.mark.parametrize(
    ("data", "param", "says"),
    [
        (b'{"messages": [{"role": "user", "content": "a \\ud800"}]}', "messages",
         "messages[0].content is not valid Unicode"),
        (b'{"messages": [{"role": "assistant", "content": "\\udfff"}, {"role": "user", '
         b'"content": "hi"}]}', "messages", "messages[0].content is not valid Unicode"),
        (b'{"user": "\\udc00", "messages": [{"role": "user", "content": "hi"}]}', "user",
         "`user` is not valid Unicode"),
        (b'{"model": "gpt\\ud83d", "messages": [{"role": "user", "content": "hi"}]}', "model",
         "`model` is not valid Unicode"),
        (b'{"metadata": {"\\ud800": 1}, "messages": [{"role": "user", "content": "hi"}]}',
         "metadata", "a key of `metadata` is not valid Unicode"),
        (b'{"\\ud800": 1, "messages": [{"role": "user", "content": "hi"}]}', None,
         "a key is not valid Unicode"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_in_any_string_is_refused_naming_the_field(
    data: bytes, param: str | None, says: str
) -> None:
    error = refused(data)
    assert error.param == param
    assert says in error.message
    json.loads(error.body())  # the error body itself is valid, ASCII-only JSON
    error.body().decode("ascii")


def test_the_checks_run_without_an_escape_in_sight() -> None:
    """Bodies with no ``\\u`` escape skip the walk of every value; a surrogate sent as raw
    (CESU-8) bytes, or an integer just over the limit, is still refused."""
    raw_surrogate = b'{"messages": [{"role": "user", "content": "a \xed\xa0\x80 b"}]}'
    assert "messages[0].content is not valid Unicode" in refused(raw_surrogate).message
    digits = strict_json.MAX_INT_DIGITS + 1
    long_seed = b'{"seed": ' + b"7" * digits + b', "messages": [{"role": "user", "content": "hi"}]}'
    assert f"`seed` is an integer of {digits} digits" in refused(long_seed).message
    assert wire.parse_chat(body(seed=int("7" * strict_json.MAX_INT_DIGITS)), None).text == "hi"


def test_a_user_that_cannot_go_in_a_header_is_refused_when_it_names_the_session() -> None:
    error = refused(body(user="日本語"))
    assert error.param == "user"
    assert "Latin-1" in error.message
    assert wire.parse_chat(body(user="josé")).session_id == "josé"  # Latin-1 is fine
    # With a session header, `user` is only the user's name and never goes in a header.
    assert wire.parse_chat(body(user="日本語"), "s1").user == "日本語"


@pytest.mark.parametrize(
    ("header", "says"),
    [("", "must be a non-empty string"), ("a\tb", "printable"), ("x" * 300, "at most 256")],
)
def test_the_session_header_is_validated_naming_it(header: str, says: str) -> None:
    error = refused(body(), header)
    assert error.param == wire.SESSION_HEADER
    assert says in error.message


@pytest.mark.parametrize(
    ("declared", "refuse"),
    [
        (None, False),
        ("application/json; charset=utf-8", False),
        ("application/vnd.api+json", False),
        ("text/plain", True),
        ("application/x-www-form-urlencoded", True),
    ],
)
def test_content_type(declared: str | None, refuse: bool) -> None:
    if not refuse:
        wire.check_content_type(declared)
        return
    with pytest.raises(wire.ApiError) as error:
        wire.check_content_type(declared)
    assert error.value.status == 415


# --- responses -----------------------------------------------------------------------------


def test_a_chunk_is_one_chat_completion_chunk_event() -> None:
    head = wire.Head("chatcmpl-1", 7, "m")
    event = wire.chunk(head, {"content": "hi"})
    assert event.startswith("data: ") and event.endswith("\n\n")
    body = json.loads(event[len("data: ") :])
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "m",
        "system_fingerprint": wire.SYSTEM_FINGERPRINT,
        "choices": [
            {"index": 0, "delta": {"content": "hi"}, "logprobs": None, "finish_reason": None}
        ],
    }
    last = json.loads(wire.chunk(head, {}, "stop")[len("data: ") :])
    assert last["choices"][0]["finish_reason"] == "stop"
    assert wire.DONE == "data: [DONE]\n\n"


def test_completion_and_model_list_shapes() -> None:
    done = wire.completion(wire.Head("chatcmpl-2", 9, "local:m"), "hello")
    assert done["object"] == "chat.completion"
    assert done["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert done["usage"] == wire.NO_USAGE  # no upstream counted: zeros, never absent
    listed = wire.model_list([("local:a", "local"), ("local:b", "local")], 9)
    assert [m["id"] for m in listed["data"]] == ["local:a", "local:b"]


def test_error_body_is_the_openai_error_object() -> None:
    error = wire.ApiError(403, "no", type="permission_error", code="user_not_allowed")
    assert json.loads(error.body()) == {
        "error": {"message": "no", "type": "permission_error", "param": None,
                  "code": "user_not_allowed"}
    }  # fmt: skip


# --- session keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        (session_key("http", "s1", "alice"), "alice"),
        (session_key("http", "s1"), None),
        (session_key("http", "a@b:c"), None),  # a client's id never makes an owner
        ("console:local", None),
    ],
)
def test_session_owner_reads_back_what_session_key_wrote(key: str, owner: str | None) -> None:
    assert session_owner(key) == owner
