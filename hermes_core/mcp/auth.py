"""OAuth for HTTP MCP servers, on the ``mcp`` SDK's client-side providers.

The SDK does the protocol (metadata discovery, dynamic registration, PKCE, token exchange,
refresh); this module stores its tokens per server in ``mcp-tokens/<name>.json`` (mode 0600)
and makes the refresh happen *before* expiry, also after a restart. The gateway never asks a
person: a server with the ``authorization_code`` grant needs ``hermes-core mcp login NAME``
first (see :mod:`hermes_core.mcp.login`), and ``client_credentials`` fetches tokens itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.auth_settings import OAuthSettings
from hermes_core.mcp.identity import CLIENT_NAME, client_version
from hermes_core.redaction import register_secrets
from hermes_core.store import default_store_path

if TYPE_CHECKING:
    import httpx2
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

Provider = TypeVar("Provider", bound="OAuthClientProvider")

TOKEN_DIR_NAME = "mcp-tokens"
#: Refresh this long before a token expires (at most a fifth of its lifetime).
REFRESH_MARGIN_S = 60.0
#: What the gateway's provider registers as redirect URI: it never redirects (login does).
UNUSED_REDIRECT = "http://127.0.0.1/callback"


class LoginRequired(Exception):
    """The server needs a person to log in; ``str()`` says what to run."""


class AuthRejected(Exception):
    """The MCP endpoint answered 401 or 403 (kept until a later request to it succeeds)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _WithoutLoginRequired(logging.Filter):
    """Drops the SDK's traceback for a flow stopped by :class:`LoginRequired`: the connection
    reports that in one line, with what to run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], LoginRequired))


logging.getLogger("mcp.client.auth.oauth2").addFilter(_WithoutLoginRequired())


def token_path(name: str) -> Path:
    """``mcp-tokens/<name>.json`` in the user data directory, beside the session store."""
    return default_store_path().parent / TOKEN_DIR_NAME / f"{name}.json"


class FileTokenStorage:
    """The SDK's ``TokenStorage`` in one JSON file, written atomically with mode 0600.

    :param fresh: start empty (a new login) instead of reading the file; the file is replaced
        on the first write.
    """

    def __init__(self, path: Path, *, fresh: bool = False) -> None:
        self.path = path
        self._data: dict[str, Any] = {} if fresh else self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.path.with_suffix(".tmp")
        # Created 0600 from the start: the tokens are never readable by others, not briefly.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(self._data, file)
        os.replace(partial, self.path)

    @property
    def has_tokens(self) -> bool:
        return "tokens" in self._data

    @property
    def refresh_at(self) -> float | None:
        """When to refresh the stored token (``time.time()``), ``None`` when it never expires."""
        value = self._data.get("refresh_at")
        return float(value) if value is not None else None

    async def get_tokens(self) -> OAuthToken | None:
        from mcp.shared.auth import OAuthToken

        tokens = self._data.get("tokens")
        if not tokens:
            return None
        token = OAuthToken.model_validate(tokens)
        _register_tokens(token)
        return token

    async def set_tokens(self, tokens: OAuthToken) -> None:
        _register_tokens(tokens)
        self._data["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        lifetime = tokens.expires_in
        self._data["refresh_at"] = (
            time.time() + lifetime - min(REFRESH_MARGIN_S, lifetime / 5)
            if lifetime is not None
            else None
        )
        self._write()

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        from mcp.shared.auth import OAuthClientInformationFull

        info = self._data.get("client_info")
        return OAuthClientInformationFull.model_validate(info) if info else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.store_client_info(client_info)

    @property
    def has_client_info(self) -> bool:
        return "client_info" in self._data

    def store_client_info(self, client_info: OAuthClientInformationFull) -> None:
        """``set_client_info``, callable outside the event loop."""
        self._data["client_info"] = client_info.model_dump(mode="json", exclude_none=True)
        self._write()


def _register_tokens(tokens: OAuthToken) -> None:
    """Tokens are secrets: no log line, error or reply may show them."""
    register_secrets([tokens.access_token, tokens.refresh_token])


def logout(name: str) -> bool:
    """Forget ``name``'s tokens and client registration; whether there were any."""
    path = token_path(name)
    existed = path.exists()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return existed


def _early_refresh(base: type[Provider]) -> type[Provider]:
    """``base`` with its token expiry taken from the storage's ``refresh_at``.

    The SDK refreshes only once a token has expired, and forgets the expiry of a token loaded
    from storage (it is then used until the server refuses it). These overrides of the SDK's
    three token-loading steps keep the expiry, less a margin, in every case.
    """

    class EarlyRefresh(base):  # type: ignore[valid-type, misc]
        def _sync_expiry(self) -> None:
            storage = self.context.storage
            if self.context.current_tokens is not None and isinstance(storage, FileTokenStorage):
                self.context.token_expiry_time = storage.refresh_at

        async def _initialize(self) -> None:
            await super()._initialize()
            self._sync_expiry()

        async def _handle_token_response(self, response: httpx2.Response) -> None:
            await super()._handle_token_response(response)
            self._sync_expiry()

        async def _handle_refresh_response(self, response: httpx2.Response) -> bool:
            refreshed: bool = await super()._handle_refresh_response(response)
            self._sync_expiry()
            return refreshed

    return EarlyRefresh


def client_metadata(oauth: OAuthSettings, redirect_uri: str) -> Any:
    """What hermes-core registers (dynamically) as an authorization-code client."""
    from mcp.shared.auth import OAuthClientMetadata
    from pydantic import AnyUrl

    return OAuthClientMetadata(
        client_name=CLIENT_NAME,
        software_version=client_version(),
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="client_secret_post" if oauth.client_secret else "none",
        scope=oauth.scope,
    )


def authorization_code_provider(
    spec: MCPServerSpec,
    storage: FileTokenStorage,
    redirect_uri: str,
    redirect_handler: Any,
    callback_handler: Any,
) -> OAuthClientProvider:
    """The SDK's provider for ``spec``, with a pre-registered ``client_id`` when configured."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientInformationFull

    assert spec.oauth is not None and spec.url is not None
    oauth = spec.oauth
    metadata = client_metadata(oauth, redirect_uri)
    base = _early_refresh(OAuthClientProvider)
    if oauth.client_id is not None and not storage.has_client_info:
        # A pre-registered client: stored as if registered, so refreshes find it too.
        storage.store_client_info(
            OAuthClientInformationFull(
                client_id=oauth.client_id,
                client_secret=oauth.client_secret,
                **metadata.model_dump(),
            )
        )
    return base(spec.url, metadata, storage, redirect_handler, callback_handler)


def client_credentials_provider(spec: MCPServerSpec) -> OAuthClientProvider:
    """The SDK's headless provider: tokens from ``client_id`` and the secret, no person."""
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

    assert spec.oauth is not None and spec.url is not None
    oauth = spec.oauth
    assert oauth.client_id is not None and oauth.client_secret is not None
    storage = FileTokenStorage(token_path(spec.name))
    base = _early_refresh(ClientCredentialsOAuthProvider)
    with warnings.catch_warnings():
        # Without `issuer` the SDK warns that it will be required in 3.0; it is optional here.
        warnings.simplefilter("ignore")
        provider = base(
            spec.url,
            storage,
            client_id=oauth.client_id,
            client_secret=oauth.client_secret,
            scope=oauth.scope,
            issuer=oauth.issuer,
        )
    return provider


async def _needs_login(_: object = None) -> Any:
    raise LoginRequired("the server asks for a new login")


def gateway_auth(spec: MCPServerSpec) -> httpx2.Auth | None:
    """The auth the gateway's connection to ``spec`` uses (``None`` without ``oauth``).

    Raises :class:`LoginRequired` when an ``authorization_code`` server has no stored tokens.
    """
    oauth = spec.oauth
    if oauth is None:
        return None
    if oauth.grant == "client_credentials":
        return client_credentials_provider(spec)
    storage = FileTokenStorage(token_path(spec.name))
    if not storage.has_tokens:
        raise LoginRequired("not logged in")
    return authorization_code_provider(spec, storage, UNUSED_REDIRECT, _needs_login, _needs_login)


def auth_hint(spec: MCPServerSpec) -> str:
    """What to do about an authentication failure of ``spec``."""
    if spec.oauth is None:
        return f"check the credentials in mcp.servers.{spec.name}.headers"
    if spec.oauth.grant == "client_credentials":
        return f"check mcp.servers.{spec.name}.oauth (client_id, client_secret_env, scopes)"
    return f"run `hermes-core mcp login {spec.name}`"


def describe_auth_error(spec: MCPServerSpec, error: BaseException) -> str | None:
    """One line for an authentication failure of ``spec``, ``None`` for any other error."""
    from mcp.client.auth import OAuthFlowError, OAuthRegistrationError, OAuthTokenError

    if isinstance(error, LoginRequired):
        problem = str(error)
    elif isinstance(error, AuthRejected):
        problem = f"the server refused the request (HTTP {error.status})"
    elif isinstance(error, OAuthFlowError | OAuthRegistrationError | OAuthTokenError):
        problem = f"OAuth failed: {error}"
    else:
        return None
    return f"authentication problem with MCP server {spec.name!r}: {problem}; {auth_hint(spec)}"
