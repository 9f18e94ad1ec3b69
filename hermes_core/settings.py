"""Settings: dynaconf files and ``HERMES_`` environment variables, validated once at start-up.

``SETTINGS`` is the single table of known keys; the dynaconf validators and the configuration
reference in ``docs/configuration.md`` both come from it.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynaconf import Dynaconf, ValidationError, Validator
from dynaconf.loaders import env_loader

from hermes_core.errors import ConfigError

ENV_PREFIX = "HERMES"
SETTINGS_FILE_ENV = "HERMES_SETTINGS"
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
    SettingSpec(
        "cache.max_sessions", (int,), 1000, "Sessions kept loaded; the rest reload from the store."
    ),
    SettingSpec("plugins.disabled", (list,), [], "Plugin names blocked before import."),
    SettingSpec("circuit_breaker.threshold", (int,), 3, "Consecutive hard failures to open."),
    SettingSpec(
        "store.path",
        (str,),
        "",
        'SQLite transcript file (empty: sessions.db in the user data dir; ":memory:": none).',
    ),
    SettingSpec("store.retention_days", NUMBER, 0, "Days an idle session is kept (0: forever)."),
    SettingSpec("logging.level", (str,), "INFO", "Log level: " + ", ".join(LOG_LEVELS) + "."),
    SettingSpec("logging.json", (bool,), False, "Write logs as JSON lines."),
    SettingSpec("metrics.port", (int,), 0, "Port of a separate /metrics server (0: none)."),
    SettingSpec("metrics.host", (str,), "127.0.0.1", "Address the /metrics server binds."),
)

#: Top-level keys that must be tables when present.
TABLES: tuple[str, ...] = (
    *dict.fromkeys(spec.key.split(".")[0] for spec in SETTINGS),
    "providers",
    "platforms",
    "mcp",
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
    SettingSpec("stall_timeout_s", NUMBER, 60, "Seconds a stream may go without data."),
    SettingSpec("max_connections", (int,), 512, "Connections kept open to the endpoint."),
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
    stall_timeout_s: float = 60.0
    max_connections: int = 512


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


def _lower_keys(value: Any, path: tuple[str, ...] = ()) -> Any:
    """Settings names are case-insensitive: env overrides arrive upper-cased from dynaconf.

    The keys of ``mcp.servers.<name>.env`` are environment variable names, whose case matters.
    """
    if isinstance(value, Mapping):
        keep_case = len(path) == 4 and path[:2] == ("mcp", "servers") and path[3] == "env"
        return {
            (str(k) if keep_case else str(k).lower()): _lower_keys(v, (*path, str(k).lower()))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_lower_keys(v, path) for v in value]
    return value


def _validator(spec: SettingSpec, prefix: str = "") -> Validator:
    key = prefix + spec.key
    message = f"{key}: expected {spec.type_name}, got {{value!r}}"
    type_check = spec.types if len(spec.types) > 1 else spec.types[0]
    messages = {"operations": message, "condition": message}
    if spec.default is None:  # required keys: their absence is reported by build_config
        return Validator(
            key,
            is_type_of=type_check,
            condition=_type_condition(spec.types),
            when=Validator(key, must_exist=True),
            messages=messages,
        )
    return Validator(
        key,
        is_type_of=type_check,
        condition=_type_condition(spec.types),
        default=spec.default,
        messages=messages,
    )


def _is_type(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that ``true`` is not accepted as a number."""
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _type_condition(types: tuple[type, ...]) -> Callable[[Any], bool]:
    # A named function, not a partial: dynaconf puts ``condition.__name__`` in its message.
    def has_expected_type(value: Any) -> bool:
        return _is_type(value, types)

    return has_expected_type


def settings_files(path: Path | str | None = None) -> list[Path]:
    """The files to read: ``path`` (or ``$HERMES_SETTINGS``), else the working directory's.

    Paths are resolved here, once, so a later ``chdir`` cannot change what was loaded.
    """
    chosen = path if path is not None else os.environ.get(SETTINGS_FILE_ENV) or None
    if chosen is not None:
        file = Path(chosen).expanduser().resolve()
        if not file.is_file():
            option = "--settings" if path is not None else SETTINGS_FILE_ENV
            if file.is_dir():
                raise ConfigError(option, f"{file} is a directory, not a settings file")
            raise ConfigError(option, f"no such settings file: {file}")
        secrets = file.with_name(".secrets.toml")
        return [file, secrets] if secrets.is_file() else [file]
    cwd = Path.cwd()
    return [p for p in (cwd / "settings.toml", cwd / ".secrets.toml") if p.is_file()]


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(file), f"invalid TOML: {error}") from None
    except UnicodeDecodeError as error:  # TOML files are UTF-8; tomllib lets this escape
        byte = error.object[error.start]
        raise ConfigError(str(file), f"not UTF-8 text: byte {byte:#04x} at {error.start}") from None
    except OSError as error:
        raise ConfigError(str(file), f"cannot read it: {error.strerror}") from None


def _merged(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key (``.secrets.toml`` adds ``api_key`` to a provider's table);
    any other value, lists included, is replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def _check_tables(raw: Mapping[str, Any]) -> None:
    """A section given as a plain value would make every key under it fail confusingly."""
    for section in TABLES:
        value = raw.get(section)
        if value is not None and not isinstance(value, Mapping):
            raise ConfigError(section, f"expected a table, got {value!r}")


def _validated(dyn: Dynaconf) -> dict[str, Any]:
    """Run the validators once and return the settings as a plain lower-cased dict."""
    _check_tables(_lower_keys(dyn.as_dict()))
    dyn.validators.register(*(_validator(spec) for spec in SETTINGS))
    try:
        dyn.validators.validate_all()
    except ValidationError as error:
        details = getattr(error, "details", None) or [(None, str(error))]
        validator, message = details[0]
        # Our messages start with the key; the ConfigError carries it apart, as elsewhere.
        key = validator.names[0] if validator is not None else ""
        raise ConfigError(key, str(message).removeprefix(f"{key}: ")) from None
    raw: dict[str, Any] = _lower_keys(dyn.as_dict())
    # dynaconf's own options, and HERMES_* variables that select things rather than set them.
    for internal in (
        "load_dotenv",
        "core_loaders",
        "envvar_prefix",
        "settings",
        "load_plugins",
        "trace_plugins",
    ):
        raw.pop(internal, None)
    return raw


def _dynaconf(data: Mapping[str, Any], *, env_wins: bool) -> Dynaconf:
    """A Dynaconf holding ``data`` and the ``HERMES_`` environment variables.

    Files are read and merged here rather than by dynaconf: its merge is all or nothing, and
    with it on a list from the environment is appended to the file's instead of replacing it.
    """
    dyn = Dynaconf(
        envvar_prefix=ENV_PREFIX,
        environments=False,
        load_dotenv=False,
        core_loaders=[],
    )
    dyn.update(_lower_keys(dict(data)))  # loads the environment first, then overrides it
    if env_wins:
        env_loader.load_from_env(dyn, ENV_PREFIX, silent=False)
    return dyn


def _settings(data: Mapping[str, Any], *, env_wins: bool) -> dict[str, Any]:
    """:func:`_validated` settings from ``data`` and the environment.

    dynaconf reads ``@int abc``, ``@json [1`` or ``@format {this.nope}`` (in a file or a
    ``HERMES_`` variable) with errors of its own that name no key: find the value at fault.
    """
    try:
        return _validated(_dynaconf(data, env_wins=env_wins))
    except ConfigError:
        raise
    except Exception as error:
        culprit = _unparsable(data)
        if culprit is None:
            raise
        problem = " ".join(str(error).split())  # one line, whatever dynaconf wrote
        raise ConfigError(culprit, f"cannot parse the value: {problem}") from None


def _loads(data: Mapping[str, Any], key: str | None = None, value: str | None = None) -> bool:
    """Whether dynaconf reads ``data``, plus the one setting ``key`` (from ``value``, else
    from its ``HERMES_`` variable), and no other variable."""
    dyn = Dynaconf(
        envvar_prefix=ENV_PREFIX, environments=False, load_dotenv=False, core_loaders=[], loaders=[]
    )
    try:
        dyn.update(_lower_keys(dict(data)))
        if value is not None and key is not None:
            dyn.set(key, value)
        elif key is not None:
            env_loader.load_from_env(dyn, ENV_PREFIX, key=key)
        dyn.as_dict()
    except Exception:
        return False
    return True


def _unparsable(data: Mapping[str, Any]) -> str | None:
    """The dotted key of the file value, or the name of the ``HERMES_`` variable, that
    dynaconf fails to read; ``None`` when no single one does."""
    converted = dict(_converted_values(data))
    if not _loads(data):
        plain = _without(data, set(converted))
        return next((k for k, v in converted.items() if not _loads(plain, k, v)), None)
    prefix = f"{ENV_PREFIX}_"
    names = sorted(name for name in os.environ if name.startswith(prefix))
    return next((name for name in names if not _loads(data, name.removeprefix(prefix))), None)


def _converted_values(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``"@..."`` string in ``node`` (dynaconf converts those) by dotted key."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _converted_values(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, str) and node.startswith("@"):
        yield path, node


def _without(node: Any, keys: set[str], path: str = "") -> Any:
    """``node`` without the dotted ``keys``."""
    if not isinstance(node, Mapping):
        return node
    kept = {}
    for key, value in node.items():
        dotted = f"{path}.{key}" if path else str(key)
        if dotted not in keys:
            kept[key] = _without(value, keys, dotted)
    return kept


def load_raw(path: Path | str | None = None) -> tuple[dict[str, Any], Path | None]:
    """Read and type-check the settings files and ``HERMES_`` environment variables."""
    files = settings_files(path)
    data: dict[str, Any] = {}
    for file in files:
        data = _merged(data, _lower_keys(_read_toml(file)))
    raw = _settings(data, env_wins=True)
    return raw, files[0] if files else None


def _provider(name: str, table: Any) -> ProviderConfig:
    key = f"providers.{name}"
    if not isinstance(table, Mapping):
        raise ConfigError(key, f"expected a table, got {table!r}")
    values: dict[str, Any] = {}
    for spec in PROVIDER_SETTINGS:
        value = table.get(spec.key, spec.default)
        if value is not None and not _is_type(value, spec.types):
            raise ConfigError(f"{key}.{spec.key}", f"expected {spec.type_name}, got {value!r}")
        values[spec.key] = value
    if values["type"] == "openai" and not values["base_url"]:
        raise ConfigError(f"{key}.base_url", "required for an OpenAI-compatible provider")
    if values["type"] == "openai" and not values["base_url"].startswith(("http://", "https://")):
        raise ConfigError(
            f"{key}.base_url", f"expected an http:// or https:// URL, got {values['base_url']!r}"
        )
    api_key = values["api_key"]
    if values["api_key_env"]:
        api_key = os.environ.get(values["api_key_env"], "")
        if not api_key:
            raise ConfigError(
                f"{key}.api_key_env",
                f"environment variable {values['api_key_env']} is not set",
            )
    for number in ("timeout_s", "max_retries", "max_retry_wait_s", "stall_timeout_s"):
        if not 0 <= values[number] < math.inf:  # NaN fails this too
            problem = f"must be >= 0 and finite, got {values[number]!r}"
            raise ConfigError(f"{key}.{number}", problem)
    for duration in ("timeout_s", "stall_timeout_s"):
        if values[duration] == 0:
            raise ConfigError(f"{key}.{duration}", "must be > 0: every request would time out")
    if values["max_connections"] < 1:
        problem = f"must be >= 1, got {values['max_connections']!r}"
        raise ConfigError(f"{key}.max_connections", problem)
    return ProviderConfig(
        name=name,
        type=values["type"],
        base_url=values["base_url"],
        api_key=api_key,
        timeout_s=float(values["timeout_s"]),
        max_retries=values["max_retries"],
        max_retry_wait_s=float(values["max_retry_wait_s"]),
        options=dict(table),
        stall_timeout_s=float(values["stall_timeout_s"]),
        max_connections=values["max_connections"],
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
    seen = {model: "agent.model"}
    for index, ref in enumerate(fallbacks):
        if ref in seen:  # a model tried twice in one run only doubles the wait and the bill
            raise ConfigError(f"agent.fallbacks[{index}]", f"{ref} is already {seen[ref]}")
        seen[ref] = f"agent.fallbacks[{index}]"

    for key, minimum in (
        ("agent.max_tool_rounds", 1),
        ("agent.max_history_messages", 1),
        ("cache.max_agents", 1),
        ("cache.max_sessions", 1),
        ("cache.idle_ttl_s", 0),
        ("circuit_breaker.threshold", 1),
        ("store.retention_days", 0),
        ("metrics.port", 0),
    ):
        section, name = key.split(".")
        if not raw[section][name] >= minimum:  # rather than <, which NaN would pass
            raise ConfigError(key, f"must be >= {minimum}, got {raw[section][name]!r}")
    if raw["metrics"]["port"] > 65535:
        raise ConfigError("metrics.port", f"must be <= 65535, got {raw['metrics']['port']!r}")
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
    return build_config(_settings(data, env_wins=False))
