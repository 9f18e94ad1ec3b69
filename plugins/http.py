"""Built-in ``http`` platform: an OpenAI-compatible chat-completions API.

Endpoints: ``POST /v1/chat/completions`` (plain JSON, or server-sent events with
``"stream": true``), ``GET /v1/models`` (the configured model chain), ``GET /metrics``
(Prometheus, from the ``metrics`` plugin; same auth as the API) and ``GET /health`` (no
auth). Starlette serves them through uvicorn *inside the gateway's event loop*: the uvicorn
server is a task this platform owns, with its signal handling switched off because the runner
owns SIGINT/SIGTERM.

The session is the ``X-Hermes-Session`` header, else the request's ``user`` field, else a new
session for that request alone; the response names it in ``X-Hermes-Session``. Only the last
``user`` message of a request is new input: the session keeps its own history, so a client
may send just that message. A failed run still answers 200, with the failure text as the
assistant message and the error kind in the ``X-Hermes-Error-Kind`` header.

Settings (``platforms.http``): ``enabled``, ``host`` (default 127.0.0.1), ``port`` (default
8000; 0 picks a free one), ``api_keys`` (list) and ``api_keys_env`` (an environment variable
holding comma-separated keys), ``allow_users``, ``max_body_bytes`` (default 1 MiB) and
``stop_grace_s``. Without any API key it listens only on a loopback host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from loguru import logger
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hermes_core import hookimpl
from hermes_core.asgi import EmbeddedServer, listen
from hermes_core.gateway import Gateway
from hermes_core.platform_settings import STRINGS
from hermes_core.platforms import (
    Intake,
    IntakeClosed,
    PlatformCheck,
    PlatformSettings,
    RegisterPlatform,
)
from hermes_core.plugins.metrics import metrics_for
from hermes_core.settings.schema import RegisterSetting, SettingsRegistry
from hermes_core.types import Message, Reply

NAME = "http"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 1 << 20
MAX_BODY_BYTES_LIMIT = 100 << 20
SESSION_HEADER = "X-Hermes-Session"
ERROR_KIND_HEADER = "X-Hermes-Error-Kind"
#: A streamed reply is cut into about this many content chunks (the run has already finished).
STREAM_PIECES = 4
#: Longest accepted session id or ``user`` value.
MAX_ID_LENGTH = 256
#: Seconds uvicorn gets to write the last responses once the runs in flight are done.
RESPONSE_FLUSH_S = 5

_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]+$")
#: Message roles of the chat-completions API.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


@dataclass(frozen=True)
class HttpSettings:
    """``platforms.http``, validated."""

    host: str
    port: int
    api_keys: tuple[str, ...]
    max_body_bytes: int

    @classmethod
    def load(cls, settings: PlatformSettings) -> HttpSettings:
        """Read and check the settings; a ConfigError names the offending key."""

        def value(key: str) -> Any:
            return settings.value(HTTP_SETTINGS.get(f"platforms.{NAME}.{key}"))

        host = value("host")
        keys = [key.strip() for key in value("api_keys") if key.strip()]
        env = value("api_keys_env")
        if env:
            found = os.environ.get(env, "")
            if not found.strip():
                raise settings.error("api_keys_env", f"environment variable {env} is not set")
            keys.extend(key.strip() for key in found.split(",") if key.strip())
        if not keys and not _is_loopback(host):
            raise settings.error(
                "host",
                f"refusing to listen on {host} without API keys; set platforms.http.api_keys "
                "(or api_keys_env), or use a loopback host such as 127.0.0.1",
            )
        return cls(host, value("port"), tuple(keys), value("max_body_bytes"))


def declare_settings(register: RegisterSetting) -> None:
    """The keys of ``platforms.http`` (``enabled`` and the Intake's are every platform's)."""
    key = f"platforms.{NAME}."
    register(key + "enabled", bool, description="Serve the API.", expected="true or false")
    register(key + "host", str, DEFAULT_HOST, "Interface to listen on.")
    register(key + "port", int, DEFAULT_PORT, "Port; 0 picks a free one.", minimum=0, maximum=65535)
    register(
        key + "api_keys",
        list,
        [],
        "Bearer keys clients must send.",
        rules=(STRINGS,),
        expected="a list of strings",
    )
    register(key + "api_keys_env", str, "", "Environment variable holding more keys.")
    register(
        key + "max_body_bytes",
        int,
        DEFAULT_MAX_BODY_BYTES,
        "Largest request body accepted.",
        minimum=1,
        maximum=MAX_BODY_BYTES_LIMIT,
    )


HTTP_SETTINGS = SettingsRegistry()
declare_settings(HTTP_SETTINGS.register)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


# --- errors in the OpenAI format ----------------------------------------------------------


class ApiError(Exception):
    """A request the API refuses; rendered as an OpenAI error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, dict(headers or {})

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_request")


async def _api_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error.response()


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return ApiError(
        error.status_code, str(error.detail), code=codes.get(error.status_code)
    ).response()


# --- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    """What hermes-core uses from a chat-completions request body."""

    text: str
    user: str | None
    model: str | None
    stream: bool

    @classmethod
    def parse(cls, body: bytes) -> ChatRequest:
        """Validate ``body``; raises a 400 :class:`ApiError` saying what is wrong."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _bad_request(f"request body is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise _bad_request("request body must be a JSON object")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad_request("`messages` must be a non-empty list", "messages")
        last_user = None
        for index, item in enumerate(messages):
            if not isinstance(item, dict) or not isinstance(item.get("role"), str):
                raise _bad_request(
                    f"messages[{index}] must be an object with a string `role`", "messages"
                )
            if item["role"] not in ROLES:
                raise _bad_request(
                    f"messages[{index}].role must be one of {', '.join(ROLES)}, "
                    f"got {item['role'][:40]!r}",
                    "messages",
                )
            if item["role"] == "user":
                last_user = index
        if last_user is None:
            raise _bad_request(
                'no user message in `messages`: the last message with role "user" is the input',
                "messages",
            )
        text = _text_of(messages[last_user].get("content"), last_user)
        if not text.strip():
            raise _bad_request(f"messages[{last_user}] (the last user message) is empty")
        _check_unicode(text, f"messages[{last_user}].content")
        stream = data.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _bad_request("`stream` must be a boolean", "stream")
        user = data.get("user")
        if user is not None:
            user = _identifier(user, "`user`")
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise _bad_request("`model` must be a string", "model")
        return cls(text=text, user=user, model=model, stream=bool(stream))


def _text_of(content: Any, index: int) -> str:
    """The text of a message: a string, or the ``text`` parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad_request(
                    f"messages[{index}].content: only text parts are supported, got {kind!r}",
                    "messages",
                )
            if not isinstance(part.get("text"), str):
                raise _bad_request(f"messages[{index}].content: a text part needs `text`")
            texts.append(part["text"])
        return "\n".join(texts)
    raise _bad_request(
        f"messages[{index}].content must be a string or a list of text parts", "messages"
    )


def _check_unicode(text: str, what: str) -> None:
    """JSON may escape a lone surrogate (``"\\ud800"``); no store or model can take one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _bad_request(
            f"{what} is not valid Unicode: a lone surrogate {text[error.start]!r} at "
            f"character {error.start}",
            "messages" if what.startswith("messages") else None,
        ) from None


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad_request(f"{what} must be a non-empty string")
    _check_unicode(value, what)
    if len(value) > MAX_ID_LENGTH or not _PRINTABLE.match(value):
        raise _bad_request(
            f"{what} must be at most {MAX_ID_LENGTH} printable characters, got {value[:40]!r}"
        )
    return value


def _check_content_type(request: Request) -> None:
    """Refuse (415) a body declared as anything but JSON, such as ``curl -d``'s form encoding.

    A request without ``Content-Type`` is read as JSON: a declared type is the only mistake
    worth refusing.
    """
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            415,
            f"unsupported Content-Type {declared[:60]!r}: send the body as application/json",
            code="unsupported_media_type",
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading them all."""
    too_large = ApiError(
        413, f"request body is larger than {limit} bytes", code="request_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


# --- responses ----------------------------------------------------------------------------


def _completion(reply: Reply, completion_id: str, created: int, model: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": "stop",
            }
        ],
    }


def _pieces(text: str, count: int = STREAM_PIECES) -> list[str]:
    """``text`` cut at word boundaries into at most ``count`` pieces that join back to it."""
    words = [word for word in re.findall(r"\S*\s*", text) if word]
    size = max(1, math.ceil(len(words) / count))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _events(reply: Reply, completion_id: str, created: int, model: str) -> Iterator[str]:
    """The reply as ``chat.completion.chunk`` server-sent events, ending with ``[DONE]``."""

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(reply.text):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"


async def _stream(events: Iterator[str]) -> AsyncIterator[str]:
    for event in events:
        yield event


# --- the platform -------------------------------------------------------------------------


class HttpPlatform:
    """The ``http`` platform. After :meth:`start`, :attr:`port` is the bound port."""

    def __init__(self, gateway: Gateway, settings: Mapping[str, Any]) -> None:
        table = PlatformSettings(NAME, settings)
        self.gateway = gateway
        self.settings = HttpSettings.load(table)
        self.intake = Intake(gateway, table)
        self.port: int | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ],
            exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        )
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = asyncio.Event()

    @property
    def url(self) -> str:
        """The base URL clients use (``.../v1`` is the OpenAI ``base_url``)."""
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind, start the uvicorn task, and return once it accepts connections."""
        if self._task is not None:
            raise RuntimeError("the http platform is already started")
        sock = listen(self.settings.host, self.settings.port, backlog=2048)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,  # never reconfigure the application's logging
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=RESPONSE_FLUSH_S,
        )
        self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name="hermes-core http server"
        )
        self._task.add_done_callback(lambda _: self._closed.set())
        while not self._server.started:
            if self._task.done():
                sock.close()
                await self._task  # re-raises what stopped it
                raise RuntimeError("the http server exited while starting")
            await asyncio.sleep(0.01)
        logger.info("http platform listening on {}", self.url)

    async def stop(self) -> None:
        """Refuse new requests (503), finish the runs in flight within ``stop_grace_s`` and
        answer them, then close every connection and the server task."""
        if self._stopping:
            await self._closed.wait()
            return
        self._stopping = True
        await self.intake.close()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            # uvicorn itself cancels handlers after RESPONSE_FLUSH_S; this bounds the rest.
            await asyncio.wait({self._task}, timeout=RESPONSE_FLUSH_S + 5)
            if not self._task.done():
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._closed.set()
        logger.info("http platform stopped")

    async def wait_closed(self) -> None:
        """Return once the server has stopped."""
        await self._closed.wait()

    # --- endpoints -----------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        if not self.settings.api_keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode()
        # compare against every key so timing does not reveal which one nearly matched
        matches = [hmac.compare_digest(given, key.encode()) for key in self.settings.api_keys]
        if scheme.lower() != "bearer" or not any(matches):
            problem = "missing" if not token else "invalid"
            raise ApiError(
                401,
                f"{problem} API key: send 'Authorization: Bearer <key>' with a key from "
                "platforms.http.api_keys",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: one message into the session, the reply out."""
        self._authenticate(request)
        _check_content_type(request)
        try:
            body = await _read_body(request, self.settings.max_body_bytes)
        except ClientDisconnect:
            return Response(status_code=400)
        chat = ChatRequest.parse(body)
        header = request.headers.get(SESSION_HEADER)
        session_id = (
            _identifier(header, f"the {SESSION_HEADER} header")
            if header is not None
            else chat.user or f"anon-{uuid.uuid4().hex}"
        )
        user = chat.user or session_id
        if not self.intake.allows(user):
            raise ApiError(
                403,
                "Sorry, this assistant only answers users on its allow list. "
                "Please ask its operator for access.",
                type="permission_error",
                code="user_not_allowed",
            )
        message = Message(
            text=chat.text, platform=NAME, session_key=f"{NAME}:{session_id}", user_id=user
        )
        try:
            reply = await self.intake.handle(message)
        except IntakeClosed:
            raise ApiError(
                503,
                "the server is shutting down; retry on another instance or later",
                type="server_error",
                code="shutting_down",
                headers={"Retry-After": "5", "Connection": "close"},
            ) from None
        headers = {SESSION_HEADER: session_id}
        if reply.result is not None and reply.result["failed"]:
            headers[ERROR_KIND_HEADER] = reply.result["error_kind"] or "internal"
        # The model that answered; a command reply has none.
        model = (reply.result and reply.result["model"]) or chat.model or "hermes-core"
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if chat.stream:
            return StreamingResponse(
                _stream(_events(reply, completion_id, created, model)),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return JSONResponse(_completion(reply, completion_id, created, model), headers=headers)

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: the configured model chain, primary first."""
        self._authenticate(request)
        config = self.gateway.config
        created = int(time.time())
        data = [
            {"id": str(ref), "object": "model", "created": created, "owned_by": ref.provider}
            for ref in (config.model, *config.fallbacks)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus metrics, behind the same API keys as the API.

        404 when the ``metrics`` plugin is disabled."""
        self._authenticate(request)
        metrics = metrics_for(self.gateway)
        if metrics is None:
            raise ApiError(404, "metrics are off: the metrics plugin is disabled", code="not_found")
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    def check(self) -> PlatformCheck:
        """For ``doctor``: whether the address can be bound (bound and closed at once)."""
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            listen(self.settings.host, self.settings.port, backlog=1).close()
        except OSError as error:
            return PlatformCheck([f"cannot listen on {address}: {error.strerror or error}"])
        keys = len(self.settings.api_keys)
        auth = f"{keys} API key(s)" if keys else "no API keys, loopback only"
        return PlatformCheck([], f"can listen on {address} ({auth})")

    async def health(self, _: Request) -> Response:
        """``GET /health``: 200 while serving, 503 while stopping. No auth."""
        if self._stopping:
            return JSONResponse({"status": "stopping"}, status_code=503)
        return JSONResponse({"status": "ok", "runs_in_flight": self.intake.in_flight})


@hookimpl(trylast=True)
def register_platforms(register: RegisterPlatform) -> None:
    register(NAME, HttpPlatform)


@hookimpl(trylast=True)
def register_settings(register: RegisterSetting) -> None:
    declare_settings(register)
