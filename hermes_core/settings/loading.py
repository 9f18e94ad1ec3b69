"""Reading the settings: the files, the ``HERMES_`` variables and the schema's validators.

Files are read here and each value is handed to dynaconf one key at a time (and each
``HERMES_`` variable through dynaconf's own env loader, one at a time), so when dynaconf
cannot parse a value (``@int abc``, ``@json [1``, ``@format {this.nope}``) the error names the
key or the variable it came from. The schema then runs as dynaconf validators, collected by
``validate_all``: the first problem, or every problem, becomes a :class:`ConfigError`.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dynaconf import Dynaconf, ValidationError, Validator
from dynaconf.loaders import env_loader
from dynaconf.validator import ValidatorList

from hermes_core.errors import ConfigError
from hermes_core.settings.schema import MISSING, NAME, Setting, SettingsRegistry

ENV_PREFIX = "HERMES"
SETTINGS_FILE_ENV = "HERMES_SETTINGS"
#: ``HERMES_`` variables that choose things rather than set them.
SELECTORS = ("HERMES_SETTINGS", "HERMES_LOAD_PLUGINS", "HERMES_TRACE_PLUGINS")
#: What dynaconf keeps among the settings for itself.
DYNACONF_KEYS = ("load_dotenv",)
BOM = b"\xef\xbb\xbf"


def settings_files(path: Path | str | None = None) -> list[Path]:
    """The files to read: ``path`` (or ``$HERMES_SETTINGS``), else the working directory's.

    Paths are resolved here, once, so a later ``chdir`` cannot change what was loaded.
    """
    chosen = path if path is not None else os.environ.get(SETTINGS_FILE_ENV) or None
    if chosen is not None:
        file = Path(chosen).expanduser().resolve()
        option = "--settings" if path is not None else SETTINGS_FILE_ENV
        if not file.exists():
            raise ConfigError(option, f"no such settings file: {file}")
        if file.is_dir():
            raise ConfigError(option, f"{file} is a directory, not a settings file")
        if not _is_regular(file):
            raise ConfigError(option, f"{file} is not a regular file (a FIFO or a device?)")
        secrets = file.with_name(".secrets.toml")
        return [file, secrets] if secrets.exists() else [file]
    cwd = Path.cwd()
    return [p for p in (cwd / "settings.toml", cwd / ".secrets.toml") if p.exists()]


def _is_regular(file: Path) -> bool:
    # Opening a FIFO blocks until a writer comes, a device may never end: read files only.
    return stat.S_ISREG(file.stat().st_mode)


def read_toml(file: Path) -> dict[str, Any]:
    """One settings file as a dict; a UTF-8 byte order mark (Windows editors) is accepted."""
    try:
        if not _is_regular(file):
            raise ConfigError(str(file), "not a regular file (a FIFO or a device?)")
        data = file.read_bytes()
    except OSError as error:
        raise ConfigError(str(file), f"cannot read it: {error.strerror}") from None
    try:
        return tomllib.loads(data.removeprefix(BOM).decode("utf-8"))
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise ConfigError(str(file), f"not UTF-8 text: byte {byte:#04x} at {error.start}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(file), f"invalid TOML: {error}") from None


def merged(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key (``.secrets.toml`` adds ``api_key`` to a provider's table);
    any other value, lists included, is replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def lower_keys(value: Any, path: tuple[str, ...] = ()) -> Any:
    """Settings names are case-insensitive: env overrides arrive upper-cased from dynaconf.

    The keys of ``mcp.servers.<name>.env`` are environment variable names, whose case matters.
    """
    if isinstance(value, Mapping):
        keep_case = len(path) == 4 and path[:2] == ("mcp", "servers") and path[3] == "env"
        return {
            (str(k) if keep_case else str(k).lower()): lower_keys(v, (*path, str(k).lower()))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [lower_keys(v, path) for v in value]
    return value


def _leaves(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every value that is not a non-empty table, and of each table
    holding a name with a dot (``[mcp.servers."tb.x"]``): a dotted key would split it."""
    for key, value in node.items():
        dotted = f"{path}.{key}" if path else str(key)
        if isinstance(value, Mapping) and value and not any("." in str(k) for k in value):
            yield from _leaves(value, dotted)
        else:
            yield dotted, value


def _set_file_values(dyn: Dynaconf, data: Mapping[str, Any]) -> None:
    for key, value in _leaves(data):
        try:
            dyn.set(key, value)
            dyn.get(key)  # ``@format`` is resolved when read
        except Exception as error:  # dynaconf's parse errors share no base class
            raise ConfigError(key, f"cannot parse the value: {_one_line(error)}") from None


def _set_env_values(dyn: Dynaconf) -> None:
    prefix = f"{ENV_PREFIX}_"
    for name in sorted(os.environ):
        if not name.startswith(prefix) or name in SELECTORS:
            continue
        try:
            env_loader.load_from_env(dyn, ENV_PREFIX, key=name.removeprefix(prefix), silent=False)
            dyn.as_dict()  # resolves ``@format`` now, while the variable is known
        except Exception as error:  # dynaconf's parse errors share no base class
            raise ConfigError(name, f"cannot parse the value: {_one_line(error)}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def load_dynaconf(data: Mapping[str, Any], *, env_wins: bool) -> Dynaconf:
    """A Dynaconf holding ``data`` and the ``HERMES_`` variables; ``env_wins`` says which
    one is applied last.

    Files are read and merged before dynaconf sees them: its own merge is all or nothing, and
    with it on a list from the environment is appended to the file's instead of replacing it.
    """
    dyn = Dynaconf(
        envvar_prefix=ENV_PREFIX, environments=False, load_dotenv=False, core_loaders=[], loaders=[]
    )
    if env_wins:
        _set_file_values(dyn, data)
        _set_env_values(dyn)
    else:
        _set_env_values(dyn)
        _set_file_values(dyn, data)
    return dyn


def as_dict(dyn: Dynaconf) -> dict[str, Any]:
    """The settings as a plain lower-cased dict, without dynaconf's own keys."""
    raw: dict[str, Any] = lower_keys(dyn.as_dict())
    for key in DYNACONF_KEYS:
        raw.pop(key, None)
    return raw


def _validator(key: str, setting: Setting, required: bool) -> Validator:
    def fits_the_schema(value: Any) -> bool:
        # The problem, in words, travels in the error: validate_all collects it per key.
        problem = setting.problem(value)
        if problem is not None:
            raise ValidationError(problem)
        return True

    options: dict[str, Any] = {"condition": fits_the_schema}
    if required and setting.required is not None:
        options.update(must_exist=True, messages={"must_exist_true": setting.required})
    # Defaults are filled for fixed keys only: a table under ``<name>`` reaches its reader
    # (an adapter's factory, a provider) as written, and the reader applies the defaults.
    if setting.default is not MISSING and NAME not in setting.key:
        options["default"] = setting.default
    return Validator(key, **options)


def validate(dyn: Dynaconf, registry: SettingsRegistry, *, required: bool) -> list[ConfigError]:
    """Check ``dyn`` against every setting of ``registry`` and fill in the defaults;
    ``required``: also report required keys that are absent.

    Returns one ConfigError per key found wrong, in declaration order; the keys inside a
    table given as a plain value are not checked (the table is reported instead).
    """
    concrete = registry.concrete(as_dict(dyn))
    validators = [_validator(key, setting, required) for key, setting in concrete]
    try:
        ValidatorList(dyn, validators=validators).validate_all()
    except ValidationError as error:
        details = error.details or [(None, str(error))]
    else:
        return []
    found: dict[str, ConfigError] = {}
    for validator, message in details:
        key = validator.names[0] if validator is not None else ""
        found.setdefault(key, ConfigError(key, str(message)))
    return list(found.values())
