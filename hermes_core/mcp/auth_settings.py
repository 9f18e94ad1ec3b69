"""The authentication keys of an HTTP server: ``headers`` (with ``${VAR}``) and ``oauth``.

Values are resolved from the environment when the spec is validated, so a missing variable
stops start-up with a ConfigError naming the key; error texts never contain a value.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hermes_core.errors import ConfigError
from hermes_core.mcp.settings import SERVER, check_table, default

GRANT = "servers.<name>.oauth.grant"
REDIRECT_PORT = "servers.<name>.oauth.redirect_port"

#: RFC 9110 token characters: what an HTTP field name may contain.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class _EnvTemplate(string.Template):
    """``${VAR}`` only (a bare ``$VAR`` stays literal); ``$${`` is a literal ``${``."""

    pattern = r"""
    \$(?:
      (?P<escaped>\$(?=\{)) |
      (?P<named>(?!)) |
      \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\} |
      (?P<invalid>\{)
    )
    """  # type: ignore[assignment]


def expand_env(key: str, text: str) -> str:
    """``text`` with each ``${VAR}`` replaced from the environment; a ConfigError on ``key``
    names a variable that is not set (never the text, which may hold a secret)."""
    template = _EnvTemplate(text)
    if not template.is_valid():
        raise ConfigError(key, "malformed ${...}: expected ${NAME} (write $${ for a literal ${)")
    missing = [name for name in template.get_identifiers() if name not in os.environ]
    if missing:
        raise ConfigError(key, f"environment variable {missing[0]} is not set")
    return template.substitute(os.environ)


def resolve_headers(where: str, table: Mapping[str, Any]) -> dict[str, str]:
    """The ``headers`` table, checked and with ``${VAR}`` expanded."""
    headers: dict[str, str] = {}
    for name, value in table.items():
        key = f"{where}.headers.{name}"
        if not _HEADER_NAME.match(str(name)):
            raise ConfigError(key, "not a valid HTTP header name")
        expanded = expand_env(key, value)
        if "\r" in expanded or "\n" in expanded:
            raise ConfigError(key, "the value contains a line break")
        headers[str(name)] = expanded
    return headers


@dataclass(frozen=True)
class OAuthSettings:
    """How hermes-core gets tokens for one server (``mcp.servers.<name>.oauth``).

    :param grant: ``authorization_code`` (a person runs ``hermes-core mcp login NAME``) or
        ``client_credentials`` (headless: the gateway fetches tokens itself).
    :param client_id: a pre-registered client; without it the client registers dynamically.
    :param client_secret: read from the variable ``client_secret_env`` names.
    :param scopes: scopes to ask for (default: what the server advertises).
    :param redirect_port: loopback port of the login redirect (0: any free port).
    :param issuer: the authorization server the client credentials belong to.
    """

    grant: str = default(GRANT)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    redirect_port: int = default(REDIRECT_PORT)
    issuer: str | None = None

    @property
    def scope(self) -> str | None:
        """The scopes as the space-separated string OAuth sends."""
        return " ".join(self.scopes) or None

    @classmethod
    def from_mapping(cls, where: str, table: Mapping[str, Any]) -> OAuthSettings:
        """Validate ``<where>.oauth``; errors name the key."""
        where = f"{where}.oauth"
        check_table(f"{SERVER}.oauth", table, where)
        grant = str(table.get("grant", default(GRANT))).lower()
        secret = None
        if (secret_env := table.get("client_secret_env")) is not None:
            secret = os.environ.get(secret_env)
            if not secret:
                raise ConfigError(
                    f"{where}.client_secret_env", f"environment variable {secret_env} is not set"
                )
        if grant == "client_credentials":
            for key in ("client_id", "client_secret_env"):
                if key not in table:
                    raise ConfigError(f"{where}.{key}", "required for grant client_credentials")
        return cls(
            grant=grant,
            client_id=table.get("client_id"),
            client_secret=secret,
            scopes=tuple(table.get("scopes", ())),
            redirect_port=table.get("redirect_port", default(REDIRECT_PORT)),
            issuer=table.get("issuer"),
        )
