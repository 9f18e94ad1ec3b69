"""The bad-request matrix: malformed requests against the real ``http`` platform.

One gateway and one http platform (a real uvicorn server on a free loopback port, API keys on,
transcripts in a real SQLite file) serve the whole module. Each malformed request must get the
right 4xx status with an OpenAI-format error saying what is wrong, and never reach a run: no
LLM request, nothing stored. Then all of them again, at once and mixed with good requests: the
good ones are answered and the store holds exactly their messages.

``tests/test_http_api.py`` holds the first malformed bodies (``{not json``, ``[1, 2]``, no
``messages``...), the over-long session header and the size limit; none is repeated here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio

from hermes_core.gateway import Gateway
from hermes_core.http_protocol import PROTOCOL, H11DeadlineProtocol
from hermes_core.manager import PluginHost
from hermes_core.platforms import session_key
from hermes_core.plugins.http import HttpPlatform
from hermes_core.plugins.http_settings import ApiKey
from hermes_core.settings import config_from_dict
from hermes_core.sqlite_store import SQLiteStore
from hermes_core.testing import FakeOpenAI, settings_for

#: The async tests share the module's event loop, where :func:`served` runs.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

KEY = "sk-bad-http"
LIMIT = 256 * 1024  # room for a body nested 100,000 deep
CHAT = "/v1/chat/completions"
JSON = "application/json"
#: Sessions belong to the API key that made them: the store files them under its name.
OWNER = ApiKey.plain(KEY).name


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def chat(*messages: Any, **fields: Any) -> bytes:
    """A chat-completions body with ``messages`` (a string is one user message)."""
    listed = [{"role": "user", "content": m} if isinstance(m, str) else m for m in messages]
    return body({"model": "any", "messages": listed, **fields})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


@dataclass
class Bad:
    """One malformed request and what the answer must be."""

    id: str
    status: int
    says: str
    content: bytes = field(default_factory=lambda: chat("hi"))
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = CHAT
    #: Send no ``Authorization`` header at all (``headers`` may still set a bad one).
    anonymous: bool = False
    #: Send the body in chunks, without ``Content-Length``: the limit holds while reading.
    chunked: bool = False
    #: The field the error's ``param`` must name, when the case says.
    param: str | None = None


HI = b'"messages": [{"role": "user", "content": "hi"}]'


# fmt: off
BAD = [
    # --- the body is not a JSON object ----------------------------------------------------------
    Bad("body cut short", 400, "not valid JSON", b'{"model": "any", "messages": ['),
    Bad("empty body", 400, "not valid JSON", b""),
    Bad("JSON null", 400, "must be a JSON object", b"null"),
    Bad("JSON string", 400, "must be a JSON object", b'"hello"'),
    Bad("invalid UTF-8 inside a string", 400, "not valid JSON",
        b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'),
    Bad("lone surrogate in the content", 400, "messages[0].content is not valid Unicode",
        b'{"messages": [{"role": "user", "content": "a \\ud800 b"}]}'),
    Bad("lone surrogate in user", 400, "`user` is not valid Unicode",
        b'{"user": "\\udc00", "messages": [{"role": "user", "content": "hi"}]}'),
    # --- messages -------------------------------------------------------------------------------
    Bad("messages an object", 400, "`messages` must be a non-empty list",
        body({"messages": user("hi")})),
    Bad("messages null", 400, "`messages` must be a non-empty list", body({"messages": None})),
    Bad("message a list", 400, "messages[0] must be an object", chat(["user", "hi"])),
    Bad("role missing", 400, "messages[0] must be an object with a string `role`",
        chat({"content": "hi"})),
    Bad("role a number", 400, "with a string `role`", chat({"role": 1, "content": "hi"})),
    Bad("role unknown", 400, "messages[0].role must be one of",
        chat({"role": "wizard", "content": "hi"})),
    Bad("unknown role before the user", 400, "messages[0].role must be one of",
        chat({"role": "narrator", "content": "once"}, "hi")),
    Bad("only a system message", 400, "no user message",
        chat({"role": "system", "content": "be nice"})),
    Bad("content missing", 400, "messages[0].content must be a string or a list",
        chat({"role": "user"})),
    Bad("content null", 400, "must be a string or a list", chat(user(None))),
    Bad("content an object", 400, "must be a string or a list", chat(user({"text": "hi"}))),
    Bad("content a list of strings", 400, "only text parts are supported, got 'str'",
        chat(user(["hi"]))),
    Bad("content parts, none of them text", 400, "only text parts are supported",
        chat(user([{"type": "input_audio", "input_audio": {"data": "AAAA"}},
                   {"type": "file", "file": {"file_id": "f1"}}]))),
    Bad("text part without text", 400, "a text part needs `text`", chat(user([{"type": "text"}]))),
    Bad("content an empty list", 400, "(the last user message) is empty", chat(user([]))),
    Bad("content only whitespace", 400, "is empty", chat(user("\n\t \r\n"))),
    Bad("last user message empty", 400, "messages[2] (the last user message) is empty",
        chat("first", {"role": "assistant", "content": "ok"}, "")),
    # --- hostile JSON: each named in `param`, never a 500 --------------------------------------
    Bad("nested 100,000 deep", 400, "`metadata` is nested deeper than 64 levels",
        b"{" + HI + b', "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        param="metadata"),
    Bad("integer of 5,000 digits", 400, "`seed` is an integer of 5000 digits",
        b"{" + HI + b', "seed": ' + b"7" * 5000 + b"}", param="seed"),
    Bad("lone surrogate in an earlier message", 400, "messages[0].content is not valid Unicode",
        b'{"messages": [{"role": "system", "content": "\\ud800"}, '
        b'{"role": "user", "content": "hi"}]}', param="messages"),
    Bad("lone surrogate in a key", 400, "a key of `metadata` is not valid Unicode",
        b"{" + HI + b', "metadata": {"\\udfff": 1}}', param="metadata"),
    Bad("user not Latin-1, naming the session", 400, "must be Latin-1 text",
        chat("hi", user="\u65e5\u672c"), param="user"),
    # --- other fields ---------------------------------------------------------------------------
    Bad("stream a number", 400, "`stream` must be a boolean", chat("hi", stream=1)),
    Bad("model a number", 400, "`model` must be a string", chat("hi", model=4)),
    Bad("user empty", 400, "`user` must be a non-empty string", chat("hi", user="")),
    Bad("user too long", 400, "`user` must be at most 256", chat("hi", user="u" * 300)),
    Bad("user with a newline", 400, "printable characters", chat("hi", user="alice\nbob")),
    # --- headers --------------------------------------------------------------------------------
    Bad("session header empty", 400, "the X-Hermes-Session header must be a non-empty",
        headers={"X-Hermes-Session": ""}),
    Bad("session header with a tab", 400, "X-Hermes-Session header must be at most 256 printable",
        headers={"X-Hermes-Session": "alice\tbob"}),
    # h11 passes DEL in a header on to the application; httptools' parser refuses it itself.
    Bad("session header with DEL", 400,
        "printable characters" if PROTOCOL is H11DeadlineProtocol else "Invalid HTTP request",
        headers={"X-Hermes-Session": "alice\x7f"}),
    Bad("Content-Type text/plain", 415, "unsupported Content-Type 'text/plain'",
        headers={"Content-Type": "text/plain"}),
    Bad("Content-Type form", 415, "send the body as application/json",
        headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Bad("Content-Type multipart", 415, "unsupported Content-Type 'multipart/form-data",
        headers={"Content-Type": "multipart/form-data; boundary=x"}),
    # --- authentication (keys are set) ----------------------------------------------------------
    Bad("no Authorization", 401, "missing API key", anonymous=True),
    Bad("Basic credentials", 401, "invalid API key",
        headers={"Authorization": f"Basic {KEY}"}),
    Bad("Bearer without a token", 401, "missing API key", headers={"Authorization": "Bearer"}),
    Bad("token without Bearer", 401, "missing API key", headers={"Authorization": KEY}),
    Bad("garbage Authorization", 401, "invalid API key",
        headers={"Authorization": "Bearer ' OR 1=1; --"}),
    # --- size, path and method ------------------------------------------------------------------
    Bad("huge body", 413, f"larger than {LIMIT} bytes", chat("x" * (2 * 1024 * 1024))),
    Bad("huge body, no Content-Length", 413, f"larger than {LIMIT} bytes",
        chat("y" * (2 * LIMIT)), chunked=True),
    Bad("unknown path", 404, "Not Found", path="/v1/completions"),
    Bad("models by POST", 405, "Method Not Allowed", path="/v1/models"),
    Bad("chat by GET", 405, "Method Not Allowed", b"", method="GET"),
    Bad("chat by PUT", 405, "Method Not Allowed", method="PUT"),
]
# fmt: on


@dataclass
class Served:
    gateway: Gateway
    platform: HttpPlatform
    store: SQLiteStore
    llm: FakeOpenAI


@pytest.fixture(scope="module")
def module_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(
    module_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """The gateway and its http platform for the whole module, then stopped."""
    host = PluginHost()
    host.load(entry_points=False)
    table = {"enabled": True, "port": 0, "api_keys": [KEY], "max_body_bytes": LIMIT}
    settings = settings_for(module_llm.url, platforms={"http": table})
    store = SQLiteStore(Path(tmp_path_factory.mktemp("bad-http")) / "sessions.db")
    gateway = Gateway(config_from_dict(settings), host, store=store)
    await gateway.start()
    platform = HttpPlatform(gateway, table)
    await platform.start()
    try:
        yield Served(gateway, platform, store, module_llm)
    finally:
        await platform.stop()
        await gateway.stop()


@pytest.fixture
def llm(served: Served) -> FakeOpenAI:
    """The scripted LLM behind :func:`served`, its request log cleared."""
    served.llm.clear()
    return served.llm


async def send(http: httpx2.AsyncClient, case: Bad) -> httpx2.Response:
    headers = {"Content-Type": JSON} if case.method in ("POST", "PUT") else {}
    if not case.anonymous:
        headers["Authorization"] = f"Bearer {KEY}"
    headers.update(case.headers)
    content = _chunks(case.content) if case.chunked else case.content
    return await http.request(case.method, case.path, content=content, headers=headers)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 8192):
        yield data[start : start + 8192]


async def stored_sessions(served: Served) -> list[tuple[str, int]]:
    """Every stored session with its number of messages."""
    return [(s.key, s.messages) for s in await served.store.sessions()]


def client(served: Served) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=served.platform.url, timeout=60)


def test_the_matrix_is_big_enough() -> None:
    assert len(BAD) >= 30
    assert len({case.id for case in BAD}) == len(BAD)


@in_module_loop
@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
async def test_a_bad_request_gets_a_4xx_openai_error_and_never_runs(
    case: Bad, served: Served, llm: FakeOpenAI
) -> None:
    stored = await stored_sessions(served)
    async with client(served) as http:
        response = await send(http, case)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == JSON
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert case.says in error["message"]
    if case.param is not None:
        assert error["param"] == case.param
    assert llm.requests == []
    assert served.platform.intake.in_flight == 0
    assert await stored_sessions(served) == stored


@pytest.mark.slow
@in_module_loop
async def test_the_server_keeps_serving_and_stores_only_the_good_runs(
    served: Served, llm: FakeOpenAI
) -> None:
    """Every bad request again, all at once and mixed with good ones (each good one in its
    own session, several sent as a conversation): the good ones are answered, and the store
    holds exactly their messages, every run answered."""
    good = {
        "plain": ["hello", "and again"],
        "long": ["z" * (LIMIT - 1024)],  # one message just within the body limit
        "nul": ["a\x00b"],  # null bytes are text too, and SQLite keeps them
        "parts": [[{"type": "text", "text": "from"}, {"type": "text", "text": "parts"}]],
        "charset": ["declared; charset=utf-8"],
    }

    async def conversation(session: str, texts: list[Any]) -> list[str]:
        answers = []
        for text in texts:
            content_type = JSON + ("; charset=utf-8" if session == "charset" else "")
            response = await http.post(
                CHAT,
                content=chat(user(text)),
                headers={
                    "Authorization": f"Bearer {KEY}",
                    "Content-Type": content_type,
                    "X-Hermes-Session": session,
                },
            )
            assert response.status_code == 200, response.text
            assert "x-hermes-error-kind" not in response.headers
            answers.append(response.json()["choices"][0]["message"]["content"])
        return answers

    async with client(served) as http:
        outcomes = await asyncio.gather(
            *(send(http, case) for case in BAD),
            *(conversation(session, texts) for session, texts in good.items()),
        )
        bad_responses, answers = outcomes[: len(BAD)], outcomes[len(BAD) :]
        last = await conversation("plain", ["still there?"])

    assert [r.status_code for r in bad_responses] == [case.status for case in BAD]
    assert answers[0] == [
        "[ok-primary] hello (user messages: 1)",
        "[ok-primary] and again (user messages: 2)",
    ]
    assert answers[2] == ["[ok-primary] a\x00b (user messages: 1)"]
    assert answers[3] == ["[ok-primary] from\nparts (user messages: 1)"]
    assert last == ["[ok-primary] still there? (user messages: 3)"]
    good["plain"].append("still there?")
    assert len(llm.requests) == sum(len(texts) for texts in good.values())

    store = served.store
    assert {s.key for s in await store.sessions()} == {
        session_key("http", name, OWNER) for name in good
    }
    for name, texts in good.items():
        lines = await store.transcript(session_key("http", name, OWNER))
        assert {line.status for line in lines} == {"answered"}
        users = [line.message["content"] for line in lines if line.message["role"] == "user"]
        assert users == [text if isinstance(text, str) else "from\nparts" for text in texts]
        assert [line.message["role"] for line in lines] == ["user", "assistant"] * len(texts)


# --- malformed HTTP itself -----------------------------------------------------------------

PROTOCOL = [
    pytest.param(b"X-Big: " + b"a" * 70_000 + b"\r\n", id="header over 64 KiB"),
    pytest.param(b"Content-Length: lots\r\n", id="Content-Length not a number"),
    pytest.param(b"X-Hermes-Session: a\x00b\r\n", id="NUL in a header"),
    pytest.param(b"Bad Header Line\r\n", id="header line without a colon"),
]


@in_module_loop
@pytest.mark.parametrize("header", PROTOCOL)
async def test_malformed_http_is_refused_before_the_application(
    header: bytes, served: Served, llm: FakeOpenAI
) -> None:
    """uvicorn answers these itself, with a 400 in the API's error format: no handler, no
    run. The server then takes the next connection as usual."""
    platform = served.platform
    assert platform.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.port)
    try:
        writer.write(
            f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n".encode()
            + header
            + b"\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)  # the server closes the connection
    finally:
        writer.close()
        await writer.wait_closed()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_http"
    assert error["message"].startswith("Invalid HTTP request received")
    assert llm.requests == []
    async with client(served) as http:
        health = await http.get("/health")
    assert health.json()["status"] == "ok"
