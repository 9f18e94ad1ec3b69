"""Platform adapters: the interface an adapter implements, the registry of factories, and the
two helpers every adapter uses.

An adapter is built by a factory ``factory(gateway, settings)`` registered through the
``register_platforms`` hook, and has three coroutines: :meth:`Platform.start`,
:meth:`Platform.stop` and :meth:`Platform.wait_closed`. Between them it turns what it receives
into :class:`~hermes_core.types.Message` objects and sends each reply back where the message
came from. Two helpers make the common mistakes hard to make:

- :class:`PlatformSettings` reads ``platforms.<name>`` with type checks, so a wrong value stops
  start-up with one line naming the key (exit code 2) instead of failing on the first message.
- :class:`~hermes_core.intake.Intake` (importable from here too) hands messages to the
  gateway: it applies ``platforms.<name>.allow_users``, keeps runs off the adapter's own tasks
  (a disconnecting client never cancels a run), sends the optional typing signal, delivers the
  replies of one session in order, and on shutdown stops taking messages and finishes the runs
  in flight within ``platforms.<name>.stop_grace_s``.

See ``docs/platforms.md`` for a complete adapter walked through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger

from hermes_core.errors import ConfigError

# Adapters import the Intake and its types from here, as before it had a module of its own.
from hermes_core.intake import (
    DEFAULT_STOP_GRACE_S,
    REFUSAL,
    Deliver,
    Intake,
    IntakeClosed,
    Refusal,
    TypingSignal,
)

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.settings import Config

__all__ = [
    "DEFAULT_STOP_GRACE_S",
    "REFUSAL",
    "Deliver",
    "Intake",
    "IntakeClosed",
    "Platform",
    "PlatformFactory",
    "PlatformRegistry",
    "PlatformSettings",
    "Refusal",
    "RegisterPlatform",
    "TypingSignal",
    "session_key",
    "session_owner",
]


def session_key(platform: str, session_id: str, owner: str | None = None) -> str:
    """``<platform>:<session_id>``, or ``<platform>@<owner>:<session_id>`` for a session that
    belongs to one authenticated client (an HTTP API key), so that two clients naming the same
    session get two sessions. Owner names hold no ``:`` or ``@``."""
    return f"{platform}@{owner}:{session_id}" if owner else f"{platform}:{session_id}"


def session_owner(key: str) -> str | None:
    """The owner :func:`session_key` put into ``key``, or None."""
    prefix, colon, _ = key.partition(":")
    _, at, owner = prefix.partition("@")
    return owner if colon and at else None


class Platform(Protocol):
    """A chat front end. It turns what it receives into :class:`hermes_core.types.Message`,
    awaits ``gateway.handle(message)`` (usually through an :class:`Intake`) and delivers the
    reply to the chat the message came from."""

    async def start(self) -> None:
        """Begin taking messages; return once running (do not block until done).

        Raise to report that the platform cannot run (server unreachable, port taken): the
        runner logs it and keeps the other platforms going.
        """
        ...

    async def stop(self) -> None:
        """Stop taking messages and finish what is in flight within a bounded grace period;
        deliver those replies, then release every connection and task. Idempotent."""
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
        """The ``register`` callback handed to ``register_platforms``.

        The first registration of a name wins: built-ins register last, so a plugin that
        registers ``console`` or ``http`` replaces the built-in adapter.
        """
        if name in self.factories:
            logger.debug("platform {} already registered; keeping the first", name)
            return
        self.factories[name] = factory

    def enabled(self, config: Config) -> list[str]:
        """Names to start: ``platforms.<name>.enabled``; the console when nothing else is."""
        tables = config.section("platforms")
        for name, table in tables.items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"platforms.{name}", f"expected a table, got {table!r}")
            enabled = table.get("enabled")
            if enabled is not None and not isinstance(enabled, bool):
                raise ConfigError(
                    f"platforms.{name}.enabled", f"expected true or false, got {enabled!r}"
                )
            if enabled is True and name not in self.factories:
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


class PlatformSettings:
    """The ``platforms.<name>`` table, read with type checks.

    Each getter returns the value or its default, and raises :class:`ConfigError` naming the
    full key (``platforms.irc.port: expected an integer, got 'x'``) when the value is wrong.
    Call them in the adapter's factory so a bad setting ends start-up with exit code 2.
    """

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        self.name = name
        self.values: Mapping[str, Any] = values if isinstance(values, Mapping) else {}

    def key(self, key: str) -> str:
        """The full dotted name of ``key``, for messages."""
        return f"platforms.{self.name}.{key}"

    def error(self, key: str, problem: str) -> ConfigError:
        """A ConfigError about ``key`` of this platform."""
        return ConfigError(self.key(key), problem)

    def _get(self, key: str, default: Any, types: tuple[type, ...], what: str) -> Any:
        value = self.values.get(key, default)
        # bool is an int subclass: ``port = true`` must not pass as 1.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise self.error(key, f"expected {what}, got {value!r}")
        return value

    def string(self, key: str, default: str) -> str:
        """A string setting."""
        value: str = self._get(key, default, (str,), "a string")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """A boolean setting."""
        value: bool = self._get(key, default, (bool,), "a boolean")
        return value

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """An integer setting within ``[minimum, maximum]``."""
        value: int = self._get(key, default, (int,), "an integer")
        self._check_range(key, value, minimum, maximum)
        return value

    def number(self, key: str, default: float, *, minimum: float | None = None) -> float:
        """A number (int or float) setting, at least ``minimum``."""
        value = float(self._get(key, default, (int, float), "a number"))
        self._check_range(key, value, minimum, None)
        return value

    def strings(self, key: str) -> list[str]:
        """A list of strings (empty when absent)."""
        value: list[Any] = self._get(key, [], (list,), "a list of strings")
        for item in value:
            if not isinstance(item, str):
                raise self.error(key, f"expected a list of strings, got item {item!r}")
        return list(value)

    def _check_range(
        self, key: str, value: float, minimum: float | None, maximum: float | None
    ) -> None:
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value!r}")
