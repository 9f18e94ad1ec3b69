"""Platform settings: the keys every ``platforms.<name>`` table has, :class:`PlatformSettings`
for an adapter's own keys, and :func:`plan_platforms`, the one place that decides which
platforms ``hermes-core run`` starts (``Gateway.configure``, the runner and ``doctor`` use it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hermes_core.errors import ConfigError
from hermes_core.settings.schema import NUMBER, Setting, SettingsRegistry, items_of

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.platforms import Platform
    from hermes_core.settings import Config

#: Seconds a stopping platform waits for runs in flight (``platforms.<name>.stop_grace_s``).
DEFAULT_STOP_GRACE_S = 30.0
STRINGS = items_of((str,), "a list of strings")


def register_platform_settings(registry: SettingsRegistry) -> None:
    """Declare the keys of every ``platforms.<name>`` table in ``registry``."""
    add = registry.register
    add("platforms.<name>", dict, description="One platform adapter's table.")
    add(
        "platforms.<name>.enabled",
        bool,
        description="Start this platform with hermes-core run.",
        expected="true or false",
    )
    add(
        "platforms.<name>.allow_users",
        list,
        [],
        "User ids allowed to talk to the agent (empty: everyone).",
        rules=(STRINGS,),
        expected="a list of strings",
    )
    add(
        "platforms.<name>.stop_grace_s",
        float,
        DEFAULT_STOP_GRACE_S,
        "Seconds a stopping platform waits for its runs in flight.",
        minimum=0,
        maximum=3600,
    )


class PlatformSettings:
    """The ``platforms.<name>`` table, read with the schema's checks.

    Keys a platform declared through ``register_settings`` arrive checked, with their defaults;
    these getters serve the keys it did not declare. Each returns the value or its default and
    raises :class:`ConfigError` naming the full key (``platforms.irc.port: expected an
    integer, got 'x'``) when the value is wrong. Call them in the adapter's factory so a bad
    setting ends start-up with exit code 2.
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

    def value(self, setting: Setting) -> Any:
        """The value of a declared key of this table (its default when absent), checked, for
        an adapter built from a table that did not go through the schema (tests)."""
        key = setting.key.rsplit(".", 1)[-1]
        value = self.values.get(key, setting.default)
        problem = setting.problem(value)
        if problem is not None:
            raise self.error(key, problem)
        return value

    def _get(self, key: str, default: Any, types: tuple[type, ...], **checks: Any) -> Any:
        return self.value(Setting(self.key(key), types, "", default, **checks))

    def string(self, key: str, default: str) -> str:
        """A string setting."""
        value: str = self._get(key, default, (str,))
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """A boolean setting."""
        value: bool = self._get(key, default, (bool,))
        return value

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """An integer setting within ``[minimum, maximum]``."""
        value: int = self._get(key, default, (int,), minimum=minimum, maximum=maximum)
        return value

    def number(self, key: str, default: float, *, minimum: float | None = None) -> float:
        """A number (int or float) setting, at least ``minimum``."""
        return float(self._get(key, default, NUMBER, minimum=minimum))

    def strings(self, key: str) -> list[str]:
        """A list of strings (empty when absent)."""
        value = self._get(key, [], (list,), expected="a list of strings", rules=(STRINGS,))
        return list(value)


@dataclass
class PlatformPlan:
    """Which platforms ``hermes-core run`` starts.

    :ivar names: installed platforms to start, in start order (the console last).
    :ivar missing: platforms enabled in the settings that no plugin installed.
    :ivar installed: every platform name plugins registered.
    """

    names: list[str]
    missing: list[str]
    installed: list[str]

    @property
    def errors(self) -> list[ConfigError]:
        """One ConfigError per missing platform."""
        known = ", ".join(sorted(self.installed)) or "none"
        return [
            ConfigError(f"platforms.{name}.enabled", f"no platform {name!r} is installed ({known})")
            for name in self.missing
        ]


def plan_platforms(config: Config, installed: Collection[str]) -> PlatformPlan:
    """``platforms.<name>.enabled = true``; the console too when nothing else is, or when its
    own flag is true. ``installed`` are the names plugins registered, in registration order.
    A flag that is not a boolean enables nothing (the schema reports it)."""
    flags = {
        name: table.get("enabled")
        for name, table in config.section("platforms").items()
        if isinstance(table, Mapping)
    }
    names = [name for name in installed if name != "console" and flags.get(name) is True]
    missing = [name for name, flag in flags.items() if flag is True and name not in installed]
    console = flags.get("console")
    if "console" in installed and (console is True or (console is None and not names)):
        names.append("console")
    return PlatformPlan(names, missing, list(installed))


def build_platform(gateway: Gateway, name: str) -> Platform:
    """The adapter of platform ``name``, built but not started: its factory checks the keys
    of ``platforms.<name>`` it reads itself, so a ConfigError here is a settings mistake."""
    table = gateway.config.section("platforms").get(name, {})
    return gateway.platforms.factories[name](gateway, table)
