"""Pool-wide MCP settings: the ``mcp.*`` keys beside ``mcp.servers``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hermes_core.errors import ConfigError

#: ``mcp.<key>``: (types, default, minimum or None). ``servers`` is validated per server.
POOL_KEYS: dict[str, tuple[tuple[type, ...], Any, float | None]] = {
    "eager": ((bool,), False, None),
    "backoff_initial_s": ((int, float), 1.0, 0.01),
    "backoff_max_s": ((int, float), 300.0, 0.01),
    "healthy_after_s": ((int, float), 60.0, 0.0),
}


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int to Python, but ``eager = 1`` or ``backoff_initial_s = true`` is a mistake.
    return isinstance(value, types) and isinstance(value, bool) == (bool in types)


@dataclass(frozen=True)
class PoolSettings:
    """How the pool starts servers and restarts the ones that die.

    :param eager: start every enabled server when the gateway starts (default: on first use).
    :param backoff_initial_s: wait before the first restart; doubles after each failure.
    :param backoff_max_s: the cap on that wait.
    :param healthy_after_s: a connection up this long resets the wait to ``backoff_initial_s``.
    """

    eager: bool = False
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    healthy_after_s: float = 60.0

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> PoolSettings:
        """Validate the ``mcp`` table; a wrong key or value names it in a ConfigError."""
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key == "servers":
                if not isinstance(value, Mapping):  # each server is checked by MCPRegistry
                    raise ConfigError("mcp.servers", f"expected a table of servers, got {value!r}")
                continue
            if key not in POOL_KEYS:
                known = ", ".join(["servers", *POOL_KEYS])
                raise ConfigError(f"mcp.{key}", f"unknown key (known: {known})")
            types, _, minimum = POOL_KEYS[key]
            if not _has_type(value, types):
                raise ConfigError(f"mcp.{key}", f"wrong type: {value!r}")
            if minimum is not None and value < minimum:
                raise ConfigError(f"mcp.{key}", f"must be >= {minimum}, got {value!r}")
            values[key] = value
        settings = cls(**values)
        if settings.backoff_max_s < settings.backoff_initial_s:
            raise ConfigError("mcp.backoff_max_s", "must be >= mcp.backoff_initial_s")
        return settings
