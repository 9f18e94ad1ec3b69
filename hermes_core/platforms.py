"""Platform adapters: the interface an adapter implements and the registry of factories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hermes_core.errors import ConfigError

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.settings import Config


class Platform(Protocol):
    """A chat front end. It turns what it receives into :class:`hermes_core.types.Message`,
    awaits ``gateway.handle(message)`` and delivers the reply."""

    async def start(self) -> None:
        """Begin taking messages; return once running (do not block until done)."""
        ...

    async def stop(self) -> None:
        """Stop taking messages and finish what is in flight; idempotent."""
        ...

    async def wait_closed(self) -> None:
        """Return when the platform has nothing more to do (the console at end of input).
        Servers that run until stopped return only after :meth:`stop`."""
        ...


PlatformFactory = Callable[["Gateway", Mapping[str, Any]], Platform]
RegisterPlatform = Callable[[str, PlatformFactory], None]


class PlatformRegistry:
    """Adapter factories by platform name."""

    def __init__(self) -> None:
        self.factories: dict[str, PlatformFactory] = {}

    def register(self, name: str, factory: PlatformFactory) -> None:
        """The ``register`` callback handed to ``register_platforms``."""
        if name in self.factories:
            raise ValueError(f"platform {name!r} is already registered")
        self.factories[name] = factory

    def enabled(self, config: Config) -> list[str]:
        """Names to start: ``platforms.<name>.enabled``; the console when nothing else is."""
        tables = config.section("platforms")
        for name in tables:
            if _table(tables, name).get("enabled") is True and name not in self.factories:
                known = ", ".join(sorted(self.factories)) or "none"
                raise ConfigError(
                    f"platforms.{name}.enabled", f"no platform {name!r} is installed ({known})"
                )
        chosen = [
            name
            for name in self.factories
            if name != "console" and _table(tables, name).get("enabled") is True
        ]
        console = _table(tables, "console").get("enabled")
        if "console" in self.factories and (console is True or (console is None and not chosen)):
            chosen.append("console")
        return chosen


def _table(tables: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = tables.get(name, {})
    return table if isinstance(table, Mapping) else {}
