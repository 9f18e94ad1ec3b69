"""The http platform's ASGI application: its routes, a trailing slash on any of them, and CORS.

``POST /v1/chat/completions/`` is served as ``POST /v1/chat/completions`` (a 307 redirect
would lose the body with many clients). CORS is off unless ``platforms.http.cors_origins``
names origins; then Starlette's ``CORSMiddleware`` answers preflight requests (no auth: a
browser sends none with them) and marks the answers of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
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


def build_app(
    routes: Sequence[BaseRoute],
    cors_origins: Sequence[str],
    exception_handlers: dict[Any, Callable[..., Any]],
) -> Starlette:
    """The application serving ``routes``, CORS for ``cors_origins`` (none: no CORS)."""
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
    return Starlette(
        routes=list(routes), middleware=middleware, exception_handlers=exception_handlers
    )
