"""The http platform's ASGI application: its routes, a trailing slash on any of them, and CORS.

``POST /v1/chat/completions/`` is served as ``POST /v1/chat/completions`` (a 307 redirect
would lose the body with many clients). CORS is off unless ``platforms.http.cors_origins``
names origins; then Starlette's ``CORSMiddleware`` answers preflight requests (no auth: a
browser sends none with them) and marks the answers of the others.

Without CORS, ``POST /v1/chat/completions`` goes through :class:`ChatDoor` straight to its
handler, in front of Starlette: its middleware stack, router and request object cost the
hot path about 60 µs a request (docs/performance.md). Every other request, and every
request when CORS is on, goes through Starlette.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

#: Response headers a browser app may read: the session, and a failed run's error kind.
EXPOSED_HEADERS = ("X-Hermes-Session", "X-Hermes-Error-Kind")
#: Seconds a browser may cache a preflight answer.
PREFLIGHT_MAX_AGE_S = 600


class TrailingSlash:
    """Serves ``/path/`` as ``/path``, for every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


#: The path :class:`ChatDoor` serves.
CHAT_PATH = "/v1/chat/completions"
#: ``handler(headers, receive)``: a request's headers (lower-case names) and its ASGI
#: ``receive``, to the response.
ChatHandler = Callable[[Mapping[str, str], Receive], Awaitable[Response]]
#: ``on_error(error)``: the response for an exception the handler raised, or ``None`` to
#: let it propagate (a bug: uvicorn answers 500 and logs it, as Starlette would).
ErrorResponse = Callable[[Exception], Response | None]


class ChatDoor:
    """Serves ``POST /v1/chat/completions`` (trailing slash or not) by ``handler``, and
    passes every other request on to ``app``."""

    def __init__(self, app: ASGIApp, handler: ChatHandler, on_error: ErrorResponse) -> None:
        self.app = app
        self.handler = handler
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        chat = path == CHAT_PATH or (path.endswith("/") and path.rstrip("/") == CHAT_PATH)
        if not chat or scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        # ASGI names are lower-case already; the first of a repeated header counts, as with
        # Starlette's Headers.get.
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(scope["headers"])
        }
        try:
            response = await self.handler(headers, receive)
        except Exception as error:
            if (answer := self.on_error(error)) is None:
                raise
            response = answer
        await response(scope, receive, send)


def build_app(
    routes: Sequence[BaseRoute],
    cors_origins: Sequence[str],
    exception_handlers: dict[Any, Callable[..., Any]],
    chat: tuple[ChatHandler, ErrorResponse] | None = None,
) -> ASGIApp:
    """The application serving ``routes``, CORS for ``cors_origins`` (none: no CORS), and,
    without CORS, ``chat`` (a handler and its error responses) in a :class:`ChatDoor`."""
    middleware = [Middleware(TrailingSlash)]
    if cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                # Client SDKs add their own headers (x-stainless-*): any request header is fine.
                allow_headers=["*"],
                expose_headers=list(EXPOSED_HEADERS),
                max_age=PREFLIGHT_MAX_AGE_S,
            ),
        )
    app = Starlette(
        routes=list(routes), middleware=middleware, exception_handlers=exception_handlers
    )
    if cors_origins or chat is None:
        return app
    return ChatDoor(app, *chat)
