"""MCP server specifications, from ``mcp.servers.<name>`` settings and ``register_mcp_servers``.

Settings override a plugin's spec of the same name; two plugins claiming one name is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hermes_core.errors import ConfigError
from hermes_core.mcp.auth_settings import OAuthSettings, resolve_headers
from hermes_core.mcp.features import Features
from hermes_core.mcp.settings import check_table, default

RegisterMCPServer = Callable[..., None]

#: Where a server's keys are declared (:mod:`hermes_core.mcp.settings`).
SERVER_KEYS = "mcp.servers.<name>"


def _default(key: str) -> Any:
    return default(f"servers.<name>.{key}")


@dataclass(frozen=True)
class MCPServerSpec:
    """How to reach one MCP server."""

    name: str
    transport: str
    source: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    timeout_s: float = _default("timeout_s")
    startup_timeout_s: float = _default("startup_timeout_s")
    enabled: bool = _default("enabled")
    tools: tuple[str, ...] | None = None
    #: Sent with every HTTP request; ``${VAR}`` already expanded (so never printed).
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    oauth: OAuthSettings | None = None
    features: Features = field(default_factory=Features)

    @classmethod
    def from_mapping(cls, name: str, values: Mapping[str, Any], source: str) -> MCPServerSpec:
        """Validate one spec; errors name the settings key (or the plugin) at fault."""
        where = f"mcp.servers.{name}" if source == "settings" else f"{source}: mcp server {name}"
        check_table(SERVER_KEYS, values, where)
        transport = values.get("transport") or ("http" if values.get("url") else "stdio")
        if transport == "stdio" and not values.get("command"):
            raise ConfigError(f"{where}.command", "required for a stdio server")
        if transport == "http" and not values.get("url"):
            raise ConfigError(f"{where}.url", "required for an http server")
        if values.get("command") and values.get("url"):
            other = "url" if transport == "stdio" else "command"
            raise ConfigError(
                f"{where}.{other}", "set either command (a stdio server) or url (an http server)"
            )
        _check_auth(where, values, transport)
        tools = values.get("tools")
        oauth = values.get("oauth")
        return cls(
            name=name,
            transport=transport,
            source=source,
            command=values.get("command"),
            args=tuple(str(a) for a in values.get("args", ())),
            env={str(k): str(v) for k, v in values.get("env", {}).items()},
            cwd=values.get("cwd"),
            url=values.get("url"),
            timeout_s=float(values.get("timeout_s", _default("timeout_s"))),
            startup_timeout_s=float(values.get("startup_timeout_s", _default("startup_timeout_s"))),
            enabled=values.get("enabled", _default("enabled")),
            tools=tuple(str(t) for t in tools) if tools is not None else None,
            headers=resolve_headers(where, values.get("headers", {})),
            oauth=OAuthSettings.from_mapping(where, oauth) if oauth is not None else None,
            features=Features.from_mapping(where, values),
        )


def _check_auth(where: str, values: Mapping[str, Any], transport: str) -> None:
    """``headers`` and ``oauth`` belong to HTTP servers, and only one sets Authorization."""
    for key in ("headers", "oauth"):
        if key in values and transport != "http":
            raise ConfigError(f"{where}.{key}", "only an http server (url) takes it")
    if "oauth" in values and any(h.lower() == "authorization" for h in values.get("headers", {})):
        raise ConfigError(f"{where}.headers.Authorization", "set either oauth or this header")


class MCPRegistry:
    """Every MCP server spec by name."""

    def __init__(self) -> None:
        self.specs: dict[str, MCPServerSpec] = {}

    def registrar(self, plugin: str) -> RegisterMCPServer:
        """A ``register`` callback for one plugin, so clashes can name both plugins."""

        def register(name: str, **spec: Any) -> None:
            existing = self.specs.get(name)
            if existing is not None and existing.source != "settings":
                raise ConfigError(
                    f"mcp server {name!r}",
                    f"registered by both {existing.source} and {plugin}",
                )
            self.specs[name] = MCPServerSpec.from_mapping(name, spec, plugin)

        return register

    def apply_settings(self, servers: Mapping[str, Any]) -> None:
        """Settings win over any plugin's spec of the same name."""
        if not isinstance(servers, Mapping):
            raise ConfigError("mcp.servers", f"expected a table of servers, got {servers!r}")
        for name, values in servers.items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"mcp.servers.{name}", f"expected a table, got {values!r}")
            self.specs[name] = MCPServerSpec.from_mapping(name, values, "settings")
