"""Built-in ``http`` platform: an OpenAI-compatible chat-completions API.

Endpoints: ``POST /v1/chat/completions`` (plain JSON, or server-sent events with
``"stream": true``), ``GET /v1/models`` (the configured model chain), ``GET /metrics``
(Prometheus, from the ``metrics`` plugin; same auth as the API) and ``GET /health`` (no
auth). Starlette routes them and :class:`~hermes_core.asgi.EmbeddedServer` serves them inside
the gateway's event loop. The wire format (parsing, rendering, errors) is
:mod:`hermes_core.plugins.openai_wire`; this module is the routes, auth and lifecycle.

The session is the ``X-Hermes-Session`` header, else the request's ``user`` field, else a new
session for that request alone; the response names it in ``X-Hermes-Session``. With API keys,
sessions belong to the key that made them (:func:`hermes_core.platforms.session_key`). Only
the last ``user`` message of a request is new input. A failed run still answers 200, with the
failure text as the assistant message and the error kind in ``X-Hermes-Error-Kind``.

Settings (``platforms.http``): see :class:`HttpSettings` and docs/configuration.md.
"""

from __future__ import annotations

import errno
import hmac
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, cast

from loguru import logger
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive

from hermes_core import hookimpl, json_codec
from hermes_core.asgi import EmbeddedServer, listen
from hermes_core.errors import ConfigError
from hermes_core.events import RunEvent, RunFinished, TextDelta
from hermes_core.gateway import Gateway
from hermes_core.platforms import (
    Intake,
    IntakeClosed,
    PlatformCheck,
    PlatformSettings,
    Refusal,
    RegisterPlatform,
)
from hermes_core.plugins import openai_wire as wire
from hermes_core.plugins.http_app import build_app
from hermes_core.plugins.http_chat import ChatRun, ChatRuns, completion_body, sse
from hermes_core.plugins.http_settings import NAME, HttpSettings, declare_settings
from hermes_core.redaction import scrub
from hermes_core.settings.schema import RegisterSetting
from hermes_core.types import Reply

__all__ = ["NAME", "HttpPlatform", "HttpSettings", "register_platforms"]

ERROR_KIND_HEADER = "X-Hermes-Error-Kind"
#: The session header as ASGI names it.
SESSION_HEADER_NAME = wire.SESSION_HEADER.lower()


class _Exposition(Protocol):
    def exposition(self, accept: str | None = None) -> tuple[bytes, str]: ...


class _Metrics(Protocol):
    """The public API of the ``metrics`` plugin that ``GET /metrics`` uses."""

    def metrics_for(self, gateway: Gateway) -> _Exposition | None: ...


#: Seconds uvicorn gets to write the last responses once the runs in flight are done.
RESPONSE_FLUSH_S = 5
#: Pending connections the kernel queues before accepting them.
BACKLOG = 2048


def _error_response(error: wire.ApiError) -> Response:
    # An error may quote an upstream's text: no configured secret leaves in it.
    headers = {name: scrub(value) for name, value in error.headers.items()}
    body = scrub(error.body().decode()).encode()
    return Response(body, status_code=error.status, headers=headers, media_type="application/json")


def _unparsable_request(message: str) -> tuple[str, bytes]:
    """The 400 body for a request uvicorn cannot parse (a control byte in a header, say),
    in the API's error format like every other refusal."""
    error = wire.ApiError(
        400, f"{message} Check the request line and headers.", code="invalid_http"
    )
    return "application/json", error.body()


async def _api_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, wire.ApiError)
    return _error_response(error)


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    status = error.status_code
    return _error_response(wire.ApiError(status, str(error.detail), code=codes.get(status)))


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading them all;
    ``declared`` is its Content-Length."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> wire.ApiError:
    return wire.ApiError(
        413, f"request body is larger than {limit} bytes", code="request_too_large"
    )


def _chat_error(error: Exception) -> Response | None:
    """The chat route's answer to an error its handler raised (see http_app.ChatDoor)."""
    return _error_response(error) if isinstance(error, wire.ApiError) else None


def _shutting_down() -> wire.ApiError:
    return wire.ApiError(
        503,
        "the server is shutting down; retry on another instance or later",
        type="server_error",
        code="shutting_down",
        headers={"Retry-After": "5", "Connection": "close"},
    )


def _session_headers(session_id: str | None) -> dict[str, str]:
    """The session's name; a stateless conversation has none to continue."""
    return {} if session_id is None else {wire.SESSION_HEADER: session_id}


def _reply_headers(reply: Reply, session_id: str | None) -> dict[str, str]:
    """The session's name and, for a failed run, its error kind; a refusal is a 403."""
    if isinstance(reply, Refusal):
        raise wire.ApiError(403, reply.text, type="permission_error", code="user_not_allowed")
    headers = _session_headers(session_id)
    if reply.result is not None and reply.result["failed"]:
        headers[ERROR_KIND_HEADER] = reply.result["error_kind"] or "internal"
    return headers


class HttpPlatform:
    """The ``http`` platform. After :meth:`start`, :attr:`port` is the bound port."""

    def __init__(self, gateway: Gateway, settings: Mapping[str, Any]) -> None:
        table = PlatformSettings(NAME, settings)
        self.gateway = gateway
        self.settings = HttpSettings.load(table)
        self.intake = Intake(gateway, table)
        self.chats = ChatRuns(gateway, self.settings)
        self.port: int | None = None
        app = build_app(
            [
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ],
            self.settings.cors_origins,
            {wire.ApiError: _api_error, HTTPException: _http_error},
            chat=(self.chat, _chat_error),
        )
        self._server = EmbeddedServer(
            app,
            name="hermes-core http server",
            stop_grace_s=RESPONSE_FLUSH_S,
            header_timeout_s=self.settings.header_timeout_s,
            bad_request_body=_unparsable_request,
        )
        self._stopping = False

    @property
    def url(self) -> str:
        """The base URL clients use (``.../v1`` is the OpenAI ``base_url``)."""
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    # --- lifecycle -----------------------------------------------------------------------

    async def check(self) -> PlatformCheck:
        """For ``doctor``: bind the address as :meth:`start` would, and close it at once;
        a problem names the key at fault, as :meth:`start` would."""
        try:
            listen(self.settings.host, self.settings.port, BACKLOG).close()
        except OSError as error:
            return PlatformCheck([self._bind_error(error).problem])
        keys = self.settings.api_keys
        auth = f"{len(keys)} API key(s)" if keys else "no API keys, loopback only"
        return PlatformCheck([], f"can listen on {self.settings.address} ({auth})")

    async def start(self) -> None:
        """Bind, start the server task, and return once it accepts connections. A taken port
        or a host that cannot be bound is a :class:`ConfigError` (exit code 2)."""
        try:
            self.port = await self._server.start(
                self.settings.host, self.settings.port, backlog=BACKLOG
            )
        except OSError as error:
            raise self._bind_error(error) from None
        self.chats.suspended.start()
        logger.info("http platform listening on {}", self.url)

    def _bind_error(self, error: OSError) -> ConfigError:
        # A name that does not resolve, or an address not on this machine, is the host's fault.
        host_at_fault = isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL
        key = "host" if host_at_fault else "port"
        reason = error.strerror or str(error)
        return ConfigError(
            f"platforms.http.{key}", f"cannot listen on {self.settings.address}: {reason}"
        )

    async def stop(self) -> None:
        """Refuse new requests (503), finish the runs in flight within ``stop_grace_s`` and
        answer them, then close every connection and the server task; the runs still waiting
        for client tool results end failed in the store. Idempotent."""
        if self._stopping:
            await self._server.wait_closed()
            return
        self._stopping = True
        await self.intake.close()
        await self._server.stop()
        await self.chats.suspended.aclose()
        logger.info("http platform stopped")

    async def wait_closed(self) -> None:
        """Return once the server has stopped."""
        await self._server.wait_closed()

    # --- endpoints -----------------------------------------------------------------------

    def _authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The name of the API key a request with ``headers`` carries (None when no keys are
        set)."""
        if not self.settings.api_keys:
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip().encode()
        owner = None
        # compare against every key so timing does not reveal which one nearly matched
        for key in self.settings.api_keys:
            if hmac.compare_digest(given, key.secret.encode()) and owner is None:
                owner = key.name
        if scheme.lower() != "bearer" or owner is None:
            problem = "missing" if not token else "invalid"
            raise wire.ApiError(
                401,
                f"{problem} API key: send 'Authorization: Bearer <key>' with a key from "
                "platforms.http.api_keys",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return owner

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions`` routed by Starlette (with CORS on): :meth:`chat`."""
        return await self.chat(request.headers, request.receive)

    async def chat(self, headers: Mapping[str, str], receive: Receive) -> Response:
        """``POST /v1/chat/completions``: one message into the session, the reply out.
        ``headers`` are the request's, looked up by lower-case name."""
        owner = self._authenticate(headers)
        wire.check_content_type(headers.get("content-type"))
        try:
            body = await _read_body(
                receive, headers.get("content-length"), self.settings.max_body_bytes
            )
        except ClientDisconnect:
            return Response(status_code=400)
        chat = wire.parse_chat(body, headers.get(SESSION_HEADER_NAME))
        run = await self.chats.prepare(chat, owner)
        # Until the run names the model that answers (a command's reply names none).
        model = chat.model or str(self.gateway.config.model)
        if chat.stream:
            return await self._streamed(run, model, chat.include_usage)
        try:
            reply = await self.intake.handle(run.message)
        except IntakeClosed:
            raise _shutting_down() from None
        self.chats.keep(run.request)
        headers = _reply_headers(reply, run.session_id)
        body = json_codec.dumps(completion_body(reply, run.request, model))
        return Response(body, headers=headers, media_type="application/json")

    async def _streamed(self, run: ChatRun, model: str, include_usage: bool) -> Response:
        """The reply as server-sent events, each text delta sent as the run produces it.

        The response head waits for the first text or the end of the run, so a run that fails
        before answering still names its kind in ``X-Hermes-Error-Kind``.
        """
        events = self.intake.stream(run.message)
        head: list[RunEvent] = []
        try:
            async for event in events:
                head.append(event)
                if isinstance(event, TextDelta | RunFinished):
                    break
        except IntakeClosed:
            raise _shutting_down() from None
        finished = head[-1] if head and isinstance(head[-1], RunFinished) else None
        headers = _session_headers(run.session_id)
        if finished is not None:
            headers = _reply_headers(finished.reply, run.session_id)

        async def replayed() -> AsyncIterator[RunEvent]:
            for event in head:
                yield event
            async for event in events:
                yield event

        body = sse(replayed(), model, self.chats, run.request, include_usage)
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _chain(self) -> list[tuple[str, str]]:
        """The configured model chain as ``(id, owner)`` pairs, primary first."""
        config = self.gateway.config
        return [(str(ref), ref.provider) for ref in (config.model, *config.fallbacks)]

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: the configured model chain, primary first."""
        self._authenticate(request.headers)
        return JSONResponse(wire.model_list(self._chain(), int(time.time())))

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{id}``: one model of the chain; 404 for any other."""
        self._authenticate(request.headers)
        model_id = request.path_params["model_id"]
        owner = dict(self._chain()).get(model_id)
        if owner is None:
            raise wire.unknown_model(model_id)
        return JSONResponse(wire.model_object(model_id, owner, int(time.time())))

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus metrics, behind the same API keys as the API.

        Asks the plugin registered as ``metrics`` for ``metrics_for(gateway)`` (its documented
        function); 404 when that plugin is disabled."""
        self._authenticate(request.headers)
        plugin = self.gateway.plugin("metrics")
        metrics = cast(_Metrics, plugin).metrics_for(self.gateway) if plugin else None
        if metrics is None:
            raise wire.ApiError(
                404, "metrics are off: the metrics plugin is disabled", code="not_found"
            )
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

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
