"""An MCP server over streamable HTTP that requires a bearer token, and its own authorization
server, built from the SDK's server-side auth pieces (``mcp.server.auth``).

Run it as ``python tests/mcp_servers/oauth_server.py --port PORT --events FILE [--ttl S]
[--static-token TOKEN] [--client-id ID --client-secret SECRET]``.

- The authorization server (same origin) publishes protected-resource and authorization-server
  metadata, accepts dynamic client registration, approves every authorization request at once
  (redirecting to the client's loopback ``redirect_uri``), and issues access tokens that expire
  after ``--ttl`` seconds, with refresh tokens.
- ``--client-id``/``--client-secret`` is a pre-registered client for the ``client_credentials``
  grant (which the SDK's token endpoint does not offer, so this module answers it).
- ``--static-token`` is also accepted, for clients that send a fixed ``Authorization`` header.

Every grant and every refused token appends one line to ``--events``: ``authorization_code``,
``refresh_token``, ``client_credentials``, ``rejected``. Tool ``whoami`` answers the client id
of the token it was called with.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import time
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.client_auth import ClientAuthenticator
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCOPE = "tools"


class Provider:
    """An in-memory authorization server that approves every request."""

    def __init__(self, events: Path, ttl: int, static_token: str | None) -> None:
        self.events = events
        self.ttl = ttl
        self.static_token = static_token
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}

    def record(self, event: str) -> None:
        with self.events.open("a", encoding="utf-8") as file:
            file.write(event + "\n")

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.clients[client_info.client_id] = client_info

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        code = secrets.token_urlsafe(16)
        assert client.client_id is not None
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [SCOPE],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    def issue(self, client_id: str, scopes: list[str], event: str, refresh: bool = True) -> Any:
        from mcp.shared.auth import OAuthToken

        self.record(event)
        token = secrets.token_urlsafe(16)
        self.access[token] = AccessToken(
            token=token, client_id=client_id, scopes=scopes, expires_at=int(time.time()) + self.ttl
        )
        refresh_token = None
        if refresh:
            refresh_token = secrets.token_urlsafe(16)
            self.refresh[refresh_token] = RefreshToken(
                token=refresh_token, client_id=client_id, scopes=scopes
            )
        return OAuthToken(
            access_token=token,
            expires_in=self.ttl,
            scope=" ".join(scopes),
            refresh_token=refresh_token,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> Any:
        del self.codes[authorization_code.code]
        code = authorization_code
        return self.issue(code.client_id, code.scopes, "authorization_code")

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        return self.refresh.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> Any:
        del self.refresh[refresh_token.token]  # rotated: each refresh token works once
        return self.issue(refresh_token.client_id, scopes or refresh_token.scopes, "refresh_token")

    async def load_access_token(self, token: str) -> AccessToken | None:
        if self.static_token is not None and secrets.compare_digest(token, self.static_token):
            return AccessToken(token=token, client_id="static", scopes=[SCOPE])
        access = self.access.get(token)
        if access is None or (access.expires_at is not None and access.expires_at < time.time()):
            self.record("rejected")
            return None
        return access

    async def revoke_token(self, token: Any) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)


def client_credentials_route(provider: Provider, client_id: str, secret: str) -> Route:
    """``POST /token`` answering ``client_credentials`` itself, anything else by the SDK."""
    sdk_token = TokenHandler(provider, ClientAuthenticator(provider))

    async def token(request: Request) -> Response:
        form = await request.form()  # cached on the request: the SDK's handler reads it again
        if form.get("grant_type") != "client_credentials":
            return await sdk_token.handle(request)
        basic = request.headers.get("authorization", "").removeprefix("Basic ")
        expected = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        if not secrets.compare_digest(basic, expected):
            provider.record("rejected")
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        scopes = str(form.get("scope") or SCOPE).split()
        tokens = provider.issue(client_id, scopes, "client_credentials", refresh=False)
        return JSONResponse(tokens.model_dump(exclude_none=True))

    return Route("/token", endpoint=token, methods=["POST"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--ttl", type=int, default=3600)
    parser.add_argument("--static-token", default=None)
    parser.add_argument("--client-id", default=None)
    parser.add_argument("--client-secret", default=None)
    options = parser.parse_args()
    origin = f"http://127.0.0.1:{options.port}"
    provider = Provider(options.events, options.ttl, options.static_token)
    server = MCPServer(
        "oauth-toolbox",
        auth_server_provider=provider,
        auth=AuthSettings(
            issuer_url=origin,  # type: ignore[arg-type]
            resource_server_url=f"{origin}/mcp",  # type: ignore[arg-type]
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=[SCOPE], default_scopes=[SCOPE]
            ),
            required_scopes=[SCOPE],
            validate_token_resource=False,
        ),
    )

    @server.tool()
    def whoami() -> str:
        """The client id of the token this call was made with."""
        access = get_access_token()
        return f"client {access.client_id if access else None}"

    app = server.streamable_http_app()
    if options.client_id is not None:
        route = client_credentials_route(provider, options.client_id, options.client_secret)
        app.router.routes.insert(0, route)  # before the SDK's own /token
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning")


if __name__ == "__main__":
    main()
