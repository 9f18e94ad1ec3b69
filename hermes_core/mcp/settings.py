"""The ``mcp`` settings: the pool's own keys and the keys of each ``mcp.servers.<name>``.

They are declared once, in :data:`MCP_SETTINGS`; the gateway adds them to its schema, and
:class:`PoolSettings` and :class:`hermes_core.mcp.MCPServerSpec` read their defaults from it and
check plugins' server specs with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hermes_core.errors import ConfigError
from hermes_core.settings.schema import (
    DAY_S,
    HOUR_S,
    RegisterSetting,
    SettingsRegistry,
    items_of,
)

SERVER = "mcp.servers.<name>"
#: How a wrong type reads for a server's key (the same whether settings or a plugin gave it).
WRONG_TYPE = "wrong type: expected {expected}, got {value!r}"
#: ``mcp.servers.<name>.oauth.grant``: how tokens are obtained.
GRANTS = ("authorization_code", "client_credentials")
#: An argument or env value may be a number or a path: it becomes text. A table is a typo.
ARGUMENT_TYPES = (str, int, float, os.PathLike)


def _http_url(value: str) -> str | None:
    if value.startswith(("http://", "https://")):
        return None
    return f"expected an http:// or https:// URL, got {value!r}"


def _env_values(value: Mapping[str, Any]) -> str | None:
    return items_of(ARGUMENT_TYPES, "strings")(list(value.values()))


def register_mcp_settings(registry: SettingsRegistry) -> None:
    """Declare the ``mcp`` keys in ``registry``."""
    add = registry.register
    add("mcp.eager", bool, False, "Start every enabled server when the gateway starts.")
    add(
        "mcp.backoff_initial_s",
        float,
        1.0,
        "Wait before restarting a server that died; doubles after each failure.",
        minimum=0.01,
        maximum=HOUR_S,
    )
    add("mcp.backoff_max_s", float, 300.0, "Cap on that wait.", minimum=0.01, maximum=DAY_S)
    add(
        "mcp.healthy_after_s",
        float,
        60.0,
        "A server up this long is healthy again.",
        minimum=0,
        maximum=DAY_S,
    )
    add("mcp.servers", dict, {}, "The MCP servers by name.", expected="a table of servers")
    add(SERVER, dict, description="One MCP server.")
    server = {"wrong_type": WRONG_TYPE}
    add(f"{SERVER}.transport", str, description='"stdio" or "http".', choices=("stdio", "http"))
    add(f"{SERVER}.command", str, description="Program to start (stdio).", **server)
    add(
        f"{SERVER}.args",
        list,
        description="Its arguments.",
        rules=(items_of(ARGUMENT_TYPES, "strings"),),
        **server,
    )
    add(
        f"{SERVER}.env",
        dict,
        description="Extra environment variables for it.",
        rules=(_env_values,),
        open=True,
        **server,
    )
    add(f"{SERVER}.cwd", str, description="Its working directory.", **server)
    add(f"{SERVER}.url", str, description="Server URL (http).", rules=(_http_url,), **server)
    add(
        f"{SERVER}.timeout_s",
        float,
        30.0,
        "Seconds one tool call may take.",
        minimum=0,
        exclusive_minimum=True,
        maximum=HOUR_S,
        **server,
    )
    add(
        f"{SERVER}.startup_timeout_s",
        float,
        10.0,
        "Seconds the server may take to start and initialize.",
        minimum=0,
        exclusive_minimum=True,
        maximum=HOUR_S,
        **server,
    )
    add(f"{SERVER}.enabled", bool, True, "false: never start the server.", **server)
    add(
        f"{SERVER}.tools",
        list,
        description="Names of the tools to offer (absent: all).",
        rules=(items_of((str,), "tool names"),),
        **server,
    )

    _register_auth_settings(add, server)
    _register_capability_settings(add, server)


def _register_auth_settings(add: RegisterSetting, server: dict[str, Any]) -> None:
    """An HTTP server's ``headers`` and ``oauth`` (read by :mod:`hermes_core.mcp.auth_settings`)."""
    add(
        f"{SERVER}.headers",
        dict,
        description="HTTP headers sent with every request; values may use ${VAR}.",
        rules=(_header_values,),
        open=True,
        **server,
    )
    add(f"{SERVER}.oauth", dict, description="Get tokens by OAuth 2.1 (http).", **server)
    oauth = f"{SERVER}.oauth"
    add(
        f"{oauth}.grant",
        str,
        "authorization_code",
        "authorization_code (mcp login) or client_credentials (headless).",
        choices=GRANTS,
        **server,
    )
    add(f"{oauth}.client_id", str, description="A pre-registered client.", **server)
    add(
        f"{oauth}.client_secret_env",
        str,
        description="Variable holding the client secret.",
        **server,
    )
    add(
        f"{oauth}.scopes",
        list,
        description="Scopes to ask for.",
        rules=(_scope_names,),
        **server,
    )
    add(
        f"{oauth}.redirect_port",
        int,
        0,
        "Loopback port of the login redirect (0: any).",
        minimum=0,
        maximum=65535,
        **server,
    )
    add(f"{oauth}.issuer", str, description="The authorization server to use.", **server)


def _register_capability_settings(add: RegisterSetting, server: dict[str, Any]) -> None:
    """What a server may use of the client: roots, resources, prompts, sampling, elicitation
    (read by :mod:`hermes_core.mcp.features`)."""
    add(
        f"{SERVER}.roots",
        list,
        description="Directories (paths or file:// URIs) offered as roots.",
        rules=(_roots,),
        **server,
    )
    add(f"{SERVER}.resources", bool, True, "Offer a tool to list and read its resources.", **server)
    add(
        f"{SERVER}.resource_max_chars",
        int,
        20_000,
        "Longest resource text that tool returns; longer is cut.",
        minimum=100,
        maximum=1_000_000,
        **server,
    )
    add(f"{SERVER}.prompts", bool, True, "Offer its prompts as /prompt commands.", **server)
    add(f"{SERVER}.sampling", dict, description="Its sampling/createMessage requests.", **server)
    add(
        f"{SERVER}.sampling.enabled",
        bool,
        False,
        "Answer them with the gateway's model chain.",
        **server,
    )
    add(
        f"{SERVER}.sampling.max_tokens",
        int,
        1_000,
        "Most tokens one answer may have (less if the server asks).",
        minimum=1,
        maximum=100_000,
        **server,
    )
    add(
        f"{SERVER}.sampling.max_per_minute",
        int,
        10,
        "Most requests answered per minute; more are refused.",
        minimum=1,
        maximum=10_000,
        **server,
    )
    add(
        f"{SERVER}.sampling.models",
        list,
        description="Models to use, first first (absent: the gateway's chain).",
        rules=(items_of((str,), "model names"),),
        **server,
    )
    add(f"{SERVER}.elicitation", dict, description="Its requests for user input.", **server)
    add(
        f"{SERVER}.elicitation.enabled",
        bool,
        True,
        "Ask the user of the session whose tool call caused it.",
        **server,
    )
    add(
        f"{SERVER}.elicitation.timeout_s",
        float,
        300.0,
        "Seconds to wait for the answer; then it is cancelled.",
        minimum=0,
        exclusive_minimum=True,
        maximum=HOUR_S,
        **server,
    )


def _roots(value: list[Any]) -> str | None:
    for item in value:
        if not isinstance(item, str) or not item:
            return f"expected paths or file:// URIs, got item {item!r}"
        if "://" in item and not item.startswith("file://"):
            return f"expected a path or a file:// URI, got {item!r}"
    return None


def _header_values(value: Mapping[str, Any]) -> str | None:
    bad = next((v for v in value.values() if not isinstance(v, str)), None)
    return None if bad is None else f"expected string values, got {type(bad).__name__}"


def _scope_names(value: list[Any]) -> str | None:
    if all(isinstance(scope, str) and scope and " " not in scope for scope in value):
        return None
    return "expected scope names without spaces"


MCP_SETTINGS = SettingsRegistry()
register_mcp_settings(MCP_SETTINGS)


def default(key: str) -> Any:
    """The declared default of ``mcp.<key>`` (``servers.<name>.timeout_s`` for a server's)."""
    return MCP_SETTINGS.get(f"mcp.{key}").default


def check_table(prefix: str, values: Mapping[str, Any], where: str) -> None:
    """Raise a ConfigError naming ``where.<key>`` for the first problem of ``values``."""
    for key, problem in MCP_SETTINGS.check_table(prefix, values):
        raise ConfigError(f"{where}.{key}", problem)


@dataclass(frozen=True)
class PoolSettings:
    """How the pool starts servers and restarts the ones that die.

    :param eager: start every enabled server when the gateway starts (default: on first use).
    :param backoff_initial_s: wait before the first restart; doubles after each failure.
    :param backoff_max_s: the cap on that wait.
    :param healthy_after_s: a connection up this long resets the wait to ``backoff_initial_s``.
    """

    eager: bool = default("eager")
    backoff_initial_s: float = default("backoff_initial_s")
    backoff_max_s: float = default("backoff_max_s")
    healthy_after_s: float = default("healthy_after_s")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> PoolSettings:
        """Validate the ``mcp`` table; a wrong key or value names it in a ConfigError."""
        check_table("mcp", table, "mcp")
        settings = cls(**{key: value for key, value in table.items() if key != "servers"})
        if settings.backoff_max_s < settings.backoff_initial_s:
            raise ConfigError("mcp.backoff_max_s", "must be >= mcp.backoff_initial_s")
        return settings
