"""Settings: dynaconf files and ``HERMES_`` environment variables, validated against one schema.

:mod:`hermes_core.settings.schema` holds the registry of known keys, :mod:`.core` the keys read
before plugins load, :mod:`.loading` the files, dynaconf and its validators. Keys of MCP
servers, platforms and plugins (``register_settings``) are checked by ``Gateway.configure``
with :func:`apply_schema`; the cross-references (model strings, providers) are checked here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynaconf import Dynaconf

from hermes_core.errors import ConfigError
from hermes_core.settings.core import register_core_settings
from hermes_core.settings.loading import (
    SETTINGS_FILE_ENV,
    as_dict,
    load_dynaconf,
    lower_keys,
    merged,
    read_toml,
    settings_files,
    validate,
)
from hermes_core.settings.schema import SettingsRegistry

__all__ = ["SETTINGS_FILE_ENV", "Config", "ConfigError", "ModelRef", "ProviderConfig"]

MODEL_PATTERN = re.compile(r"^(?P<provider>[A-Za-z0-9_.-]+):(?P<model>\S.*)$")


def core_registry() -> SettingsRegistry:
    """A registry holding the core settings; the gateway adds the rest to its own copy."""
    registry = SettingsRegistry()
    register_core_settings(registry)
    return registry


#: The core settings, for reading (the gateway extends a copy of its own).
CORE_SETTINGS = core_registry()


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``"<provider>:<model>"`` string."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"

    @classmethod
    def parse(cls, value: object, key: str) -> ModelRef:
        """Parse a model string, raising a ConfigError that names ``key`` when it is malformed."""
        match = MODEL_PATTERN.match(value) if isinstance(value, str) else None
        if match is None:
            raise ConfigError(key, f'expected "<provider>:<model>", got {value!r}')
        return cls(match["provider"].lower(), match["model"])


@dataclass(frozen=True)
class ProviderConfig:
    """One ``providers.<name>`` table, validated."""

    name: str
    type: str
    base_url: str | None
    api_key: str = field(repr=False)
    timeout_s: float
    max_retries: int
    max_retry_wait_s: float
    options: Mapping[str, Any] = field(repr=False)
    stall_timeout_s: float = 60.0
    max_connections: int = 512


@dataclass(frozen=True)
class Config:
    """The validated settings. ``raw`` keeps every key (lower-cased) for plugins' own sections."""

    model: ModelRef
    fallbacks: tuple[ModelRef, ...]
    providers: Mapping[str, ProviderConfig]
    raw: dict[str, Any] = field(repr=False)
    source: Path | None
    #: The dynaconf object the settings were read into: the schema's later checks run on it.
    dynaconf: Dynaconf = field(repr=False, compare=False)

    def get(self, dotted_key: str, default: Any = None) -> Any:
        """Look a key up by its dotted path, e.g. ``config.get("circuit_breaker.threshold")``."""
        node: Any = self.raw
        for part in dotted_key.lower().split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def section(self, dotted_key: str) -> dict[str, Any]:
        """A table of settings as a dict (empty when absent)."""
        value = self.get(dotted_key, {})
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def disabled_plugins(self) -> frozenset[str]:
        return frozenset(str(name) for name in self.get("plugins.disabled", []))


def _first(errors: list[ConfigError]) -> None:
    if errors:
        raise errors[0]


def read_settings(path: Path | str | None = None) -> tuple[Dynaconf, Path | None]:
    """Read the files and ``HERMES_`` variables, checked against the core settings."""
    files = settings_files(path)
    data: dict[str, Any] = {}
    for file in files:
        data = merged(data, lower_keys(read_toml(file)))
    dyn = load_dynaconf(data, env_wins=True)
    # Required keys are checked by build_config: ``plugins`` and ``mcp list`` run without them.
    _first(validate(dyn, CORE_SETTINGS, required=False))
    return dyn, files[0] if files else None


def load_raw(path: Path | str | None = None) -> tuple[dict[str, Any], Path | None]:
    """The settings as a dict (core keys checked, defaults filled) and the file they came
    from: enough for commands that start no gateway."""
    dyn, source = read_settings(path)
    return as_dict(dyn), source


def _provider(name: str, table: Any) -> ProviderConfig:
    """One ``providers.<name>`` table, its types and bounds already checked."""
    key = f"providers.{name}"
    values = {
        setting.key.rsplit(".", 1)[1]: table.get(setting.key.rsplit(".", 1)[1], setting.default)
        for setting in CORE_SETTINGS.declared()
        if setting.key.count(".") == 2 and setting.key.startswith("providers.<name>.")
    }
    api_key = values["api_key"]
    if values["api_key_env"]:
        api_key = os.environ.get(values["api_key_env"], "")
        if not api_key:
            raise ConfigError(
                f"{key}.api_key_env",
                f"environment variable {values['api_key_env']} is not set",
            )
    return ProviderConfig(
        name=name,
        type=values["type"],
        base_url=table.get("base_url"),
        api_key=api_key,
        timeout_s=float(values["timeout_s"]),
        max_retries=values["max_retries"],
        max_retry_wait_s=float(values["max_retry_wait_s"]),
        options=dict(table),
        stall_timeout_s=float(values["stall_timeout_s"]),
        max_connections=values["max_connections"],
    )


def build_config(dyn: Dynaconf, source: Path | None = None) -> Config:
    """Check what the schema alone cannot: model strings and provider references."""
    raw = as_dict(dyn)
    providers = {name: _provider(name, table) for name, table in raw["providers"].items()}

    model_setting = CORE_SETTINGS.get("agent.model")
    if not raw["agent"].get("model"):
        raise ConfigError("agent.model", str(model_setting.required))
    model = ModelRef.parse(raw["agent"]["model"], "agent.model")
    fallbacks = tuple(
        ModelRef.parse(value, f"agent.fallbacks[{index}]")
        for index, value in enumerate(raw["agent"]["fallbacks"])
    )
    for key, ref in [("agent.model", model)] + [
        (f"agent.fallbacks[{i}]", ref) for i, ref in enumerate(fallbacks)
    ]:
        if ref.provider not in providers:
            known = ", ".join(sorted(providers)) or "none configured"
            raise ConfigError(key, f"unknown provider {ref.provider!r} (known: {known})")
    seen = {model: "agent.model"}
    for index, ref in enumerate(fallbacks):
        if ref in seen:  # a model tried twice in one run only doubles the wait and the bill
            raise ConfigError(f"agent.fallbacks[{index}]", f"{ref} is already {seen[ref]}")
        seen[ref] = f"agent.fallbacks[{index}]"

    return Config(model, fallbacks, providers, raw, source, dyn)


def load_config(path: Path | str | None = None) -> Config:
    """Load, validate and return the settings; raises ConfigError with a one-line message."""
    return build_config(*read_settings(path))


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Validate settings given as a dict (tests, the demo, embedding applications).

    The dict plays the part of a settings file; ``HERMES_`` environment variables still fill
    the keys it leaves out, but never override a key it sets.
    """
    dyn = load_dynaconf(lower_keys(dict(data)), env_wins=False)
    _first(validate(dyn, CORE_SETTINGS, required=False))
    return build_config(dyn, None)


def apply_schema(config: Config, registry: SettingsRegistry) -> list[ConfigError]:
    """Check ``config`` against ``registry`` (the core settings plus what the MCP pool,
    platforms and plugins declared), fill in the defaults, and return every problem."""
    errors = validate(config.dynaconf, registry, required=True)
    config.raw.update(as_dict(config.dynaconf))
    return errors
