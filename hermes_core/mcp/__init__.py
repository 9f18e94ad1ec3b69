"""MCP server specifications, from ``mcp.servers.<name>`` settings and ``register_mcp_servers``.

Settings override a plugin's spec of the same name; two plugins claiming one name is an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hermes_core.errors import ConfigError

RegisterMCPServer = Callable[..., None]

SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "command": (str,),
    "args": (list,),
    "env": (dict,),
    "cwd": (str,),
    "url": (str,),
    "transport": (str,),
    "timeout_s": (int, float),
    "startup_timeout_s": (int, float),
    "enabled": (bool,),
    "tools": (list,),
}
TRANSPORTS = ("stdio", "http")


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
    timeout_s: float = 30.0
    startup_timeout_s: float = 10.0
    enabled: bool = True
    tools: tuple[str, ...] | None = None

    @classmethod
    def from_mapping(cls, name: str, values: Mapping[str, Any], source: str) -> MCPServerSpec:
        """Validate one spec; errors name the settings key (or the plugin) at fault."""
        where = f"mcp.servers.{name}" if source == "settings" else f"{source}: mcp server {name}"
        for key, value in values.items():
            if key not in SPEC_TYPES:
                raise ConfigError(f"{where}.{key}", f"unknown key (known: {', '.join(SPEC_TYPES)})")
            if not isinstance(value, SPEC_TYPES[key]) or isinstance(value, bool) != (
                bool in SPEC_TYPES[key]
            ):
                raise ConfigError(f"{where}.{key}", f"wrong type: {value!r}")
        transport = values.get("transport") or ("http" if values.get("url") else "stdio")
        if transport not in TRANSPORTS:
            raise ConfigError(f"{where}.transport", f"expected stdio or http, got {transport!r}")
        if transport == "stdio" and not values.get("command"):
            raise ConfigError(f"{where}.command", "required for a stdio server")
        if transport == "http" and not values.get("url"):
            raise ConfigError(f"{where}.url", "required for an http server")
        _check_values(where, values, transport)
        tools = values.get("tools")
        return cls(
            name=name,
            transport=transport,
            source=source,
            command=values.get("command"),
            args=tuple(str(a) for a in values.get("args", ())),
            env={str(k): str(v) for k, v in values.get("env", {}).items()},
            cwd=values.get("cwd"),
            url=values.get("url"),
            timeout_s=float(values.get("timeout_s", 30.0)),
            startup_timeout_s=float(values.get("startup_timeout_s", 10.0)),
            enabled=values.get("enabled", True),
            tools=tuple(str(t) for t in tools) if tools is not None else None,
        )


def _check_values(where: str, values: Mapping[str, Any], transport: str) -> None:
    """What types alone cannot catch: both transports at once, ranges, list items."""
    if values.get("command") and values.get("url"):
        other = "url" if transport == "stdio" else "command"
        raise ConfigError(
            f"{where}.{other}", "set either command (a stdio server) or url (an http server)"
        )
    url = values.get("url")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url", f"expected an http:// or https:// URL, got {url!r}")
    for key in ("timeout_s", "startup_timeout_s"):
        value = values.get(key)
        if value is not None and not 0 < value < math.inf:  # NaN fails this too
            raise ConfigError(f"{where}.{key}", f"must be > 0 and finite, got {value!r}")
    # Numbers and paths are fine as arguments (they become text); a table or list is a typo.
    items = [("args", item) for item in values.get("args", ())]
    items += [("env", value) for value in values.get("env", {}).values()]
    for key, item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float | os.PathLike):
            raise ConfigError(f"{where}.{key}", f"expected strings, got {item!r}")
    for tool in values.get("tools") or ():
        if not isinstance(tool, str):
            raise ConfigError(f"{where}.tools", f"expected tool names, got {tool!r}")


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
