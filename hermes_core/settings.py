"""Settings: dynaconf files and ``HERMES_`` environment variables, validated once at start-up.

``SETTINGS`` is the single table of known keys; the dynaconf validators and the configuration
reference in ``docs/configuration.md`` both come from it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynaconf import Dynaconf, ValidationError, Validator

from hermes_core.errors import ConfigError

ENV_PREFIX = "HERMES"
SETTINGS_FILE_ENV = "HERMES_SETTINGS"
SECRET_KEY_PATTERN = re.compile(r"(api_key|api_keys|token|secret|password)$", re.IGNORECASE)
MODEL_PATTERN = re.compile(r"^(?P<provider>[A-Za-z0-9_.-]+):(?P<model>\S.*)$")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


NUMBER: tuple[type, ...] = (int, float)


@dataclass(frozen=True)
class SettingSpec:
    """One known settings key: its type, default and one line of documentation."""

    key: str
    types: tuple[type, ...]
    default: Any
    doc: str
    required: bool = False

    @property
    def type_name(self) -> str:
        if self.types == NUMBER:
            return "a number"
        names = {bool: "a boolean", int: "an integer", str: "a string", list: "a list"}
        return " or ".join(names.get(t, t.__name__) for t in self.types)


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("agent.model", (str,), None, 'Primary model, "<provider>:<model>".', True),
    SettingSpec("agent.fallbacks", (list,), [], "Models tried in order when the primary fails."),
    SettingSpec("agent.system_prompt", (str,), "", "System message sent first on every request."),
    SettingSpec("agent.max_tool_rounds", (int,), 10, "Tool-call rounds allowed in one run."),
    SettingSpec("agent.max_history_messages", (int,), 200, "History messages sent per request."),
    SettingSpec("cache.max_agents", (int,), 256, "Cached agents kept; least recently used go."),
    SettingSpec("cache.idle_ttl_s", NUMBER, 3600, "Seconds an unused agent stays (0: forever)."),
    SettingSpec("plugins.disabled", (list,), [], "Plugin names blocked before import."),
    SettingSpec("circuit_breaker.threshold", (int,), 3, "Consecutive hard failures to open."),
    SettingSpec("store.path", (str,), "", "SQLite transcript file (empty: keep in memory)."),
    SettingSpec("logging.level", (str,), "INFO", "Log level: " + ", ".join(LOG_LEVELS) + "."),
    SettingSpec("logging.json", (bool,), False, "Write logs as JSON lines."),
)

#: Keys of each ``providers.<name>`` table.
PROVIDER_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("type", (str,), "openai", "Provider type (a registered provider plugin)."),
    SettingSpec("base_url", (str,), None, "Endpoint, e.g. https://api.openai.com/v1."),
    SettingSpec("api_key_env", (str,), "", "Name of the environment variable with the key."),
    SettingSpec("api_key", (str,), "", "The key itself (keep it in .secrets.toml)."),
    SettingSpec("timeout_s", NUMBER, 60, "Seconds before one request times out."),
    SettingSpec("max_retries", (int,), 2, "Retries of a transient error before failing over."),
    SettingSpec("max_retry_wait_s", NUMBER, 30, "Cap on one Retry-After wait, in seconds."),
)


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


@dataclass(frozen=True)
class Config:
    """The validated settings. ``raw`` keeps every key (lower-cased) for plugins' own sections."""

    model: ModelRef
    fallbacks: tuple[ModelRef, ...]
    providers: Mapping[str, ProviderConfig]
    raw: Mapping[str, Any] = field(repr=False)
    source: Path | None = None

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


def _lower_keys(value: Any) -> Any:
    """Settings names are case-insensitive: env overrides arrive upper-cased from dynaconf."""
    if isinstance(value, Mapping):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def _validator(spec: SettingSpec, prefix: str = "") -> Validator:
    key = prefix + spec.key
    message = f"{key}: expected {spec.type_name}, got {{value!r}}"
    type_check = spec.types if len(spec.types) > 1 else spec.types[0]
    if spec.default is None:  # required keys: their absence is reported by build_config
        return Validator(
            key,
            is_type_of=type_check,
            when=Validator(key, must_exist=True),
            messages={"operations": message},
        )
    return Validator(
        key, is_type_of=type_check, default=spec.default, messages={"operations": message}
    )


def settings_files(path: Path | str | None = None) -> list[Path]:
    """The files to read: ``path`` (or ``$HERMES_SETTINGS``), else the working directory's.

    Paths are resolved here, once, so a later ``chdir`` cannot change what was loaded.
    """
    chosen = path if path is not None else os.environ.get(SETTINGS_FILE_ENV) or None
    if chosen is not None:
        file = Path(chosen).expanduser().resolve()
        if not file.is_file():
            raise ConfigError("--settings", f"no such settings file: {file}")
        secrets = file.with_name(".secrets.toml")
        return [file, secrets] if secrets.is_file() else [file]
    cwd = Path.cwd()
    return [p for p in (cwd / "settings.toml", cwd / ".secrets.toml") if p.is_file()]


def _validated(dyn: Dynaconf, where: str) -> dict[str, Any]:
    """Run the validators once and return the settings as a plain lower-cased dict."""
    dyn.validators.register(*(_validator(spec) for spec in SETTINGS))
    try:
        dyn.validators.validate_all()
    except ValidationError as error:
        details = getattr(error, "details", None) or [(None, str(error))]
        raise ConfigError("", str(details[0][1])) from None
    except ValueError as error:  # a settings file that is not valid TOML
        raise ConfigError(where, str(error)) from None
    raw: dict[str, Any] = _lower_keys(dyn.as_dict())
    for internal in ("load_dotenv", "core_loaders", "envvar_prefix"):
        raw.pop(internal, None)
    return raw


def _dynaconf(files: list[Path]) -> Dynaconf:
    return Dynaconf(
        envvar_prefix=ENV_PREFIX,
        settings_files=[str(f) for f in files],
        environments=False,
        load_dotenv=False,
        core_loaders=["TOML"],
    )


def load_raw(path: Path | str | None = None) -> tuple[dict[str, Any], Path | None]:
    """Read and type-check the settings files and ``HERMES_`` environment variables."""
    files = settings_files(path)
    raw = _validated(_dynaconf(files), str(files[0]) if files else "settings")
    return raw, files[0] if files else None


def _provider(name: str, table: Any) -> ProviderConfig:
    key = f"providers.{name}"
    if not isinstance(table, Mapping):
        raise ConfigError(key, f"expected a table, got {table!r}")
    values: dict[str, Any] = {}
    for spec in PROVIDER_SETTINGS:
        value = table.get(spec.key, spec.default)
        if value is not None and not isinstance(value, spec.types):
            raise ConfigError(f"{key}.{spec.key}", f"expected {spec.type_name}, got {value!r}")
        values[spec.key] = value
    if values["type"] == "openai" and not values["base_url"]:
        raise ConfigError(f"{key}.base_url", "required for an OpenAI-compatible provider")
    api_key = values["api_key"]
    if values["api_key_env"]:
        api_key = os.environ.get(values["api_key_env"], "")
        if not api_key:
            raise ConfigError(
                f"{key}.api_key_env",
                f"environment variable {values['api_key_env']} is not set",
            )
    for number in ("timeout_s", "max_retries", "max_retry_wait_s"):
        if values[number] < 0:
            raise ConfigError(f"{key}.{number}", f"must be >= 0, got {values[number]!r}")
    return ProviderConfig(
        name=name,
        type=values["type"],
        base_url=values["base_url"],
        api_key=api_key,
        timeout_s=float(values["timeout_s"]),
        max_retries=values["max_retries"],
        max_retry_wait_s=float(values["max_retry_wait_s"]),
        options=dict(table),
    )


def build_config(raw: dict[str, Any], source: Path | None = None) -> Config:
    """Check what types alone cannot: model strings, provider references, ranges."""
    providers_table = raw.get("providers", {})
    if not isinstance(providers_table, Mapping):
        raise ConfigError("providers", f"expected a table, got {providers_table!r}")
    providers = {name: _provider(name, table) for name, table in providers_table.items()}

    model_value = raw.get("agent", {}).get("model")
    if model_value in (None, ""):
        raise ConfigError("agent.model", 'required: set it to "<provider>:<model>"')
    model = ModelRef.parse(model_value, "agent.model")
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

    for key, minimum in (
        ("agent.max_tool_rounds", 1),
        ("agent.max_history_messages", 1),
        ("cache.max_agents", 1),
        ("cache.idle_ttl_s", 0),
        ("circuit_breaker.threshold", 1),
    ):
        section, name = key.split(".")
        if raw[section][name] < minimum:
            raise ConfigError(key, f"must be >= {minimum}, got {raw[section][name]!r}")
    level = str(raw["logging"]["level"]).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            "logging.level", f"expected one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    raw["logging"]["level"] = level
    for name in raw["plugins"]["disabled"]:
        if not isinstance(name, str):
            raise ConfigError("plugins.disabled", f"expected plugin names, got {name!r}")
    return Config(model=model, fallbacks=fallbacks, providers=providers, raw=raw, source=source)


def load_config(path: Path | str | None = None) -> Config:
    """Load, validate and return the settings; raises ConfigError with a one-line message."""
    raw, source = load_raw(path)
    return build_config(raw, source)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Validate settings given as a dict (tests, the demo, embedding applications).

    The dict plays the part of a settings file; ``HERMES_`` environment variables still fill
    the keys it leaves out, but never override a key it sets.
    """
    dyn = _dynaconf([])
    dyn.update(_lower_keys(dict(data)))
    return build_config(_validated(dyn, "settings"))


def redacted(value: Any, key: str = "") -> Any:
    """A copy of the settings with every secret replaced, for ``config show`` and logs."""
    if isinstance(value, Mapping):
        return {k: redacted(v, k) for k, v in value.items()}
    if key and SECRET_KEY_PATTERN.search(key) and value:
        return "***" if not isinstance(value, list) else ["***" for _ in value]
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value
