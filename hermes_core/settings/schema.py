"""The settings schema: every known key with its type, default, bounds and description.

Core, the MCP pool, the platforms and every plugin (through the ``register_settings`` hook)
declare their keys in one :class:`SettingsRegistry`, the way tox plugins use ``add_config``.
A key is dotted; ``<name>`` stands for any table name (``providers.<name>.timeout_s``).
:meth:`Setting.problem` is the one place a value is judged: dynaconf validators call it for the
settings files and environment (:mod:`hermes_core.settings.validation`), and MCP server specs
registered by plugins go through it too.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The placeholder for a table name in a key.
NAME = "<name>"
#: "No default": the key is absent unless set (``None`` could be a default of its own).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
NUMBER: tuple[type, ...] = (int, float)
#: Seconds in an hour and in a day: the usual upper bounds of a duration setting.
HOUR_S = 3_600
DAY_S = 86_400

#: A further rule for one setting: the problem with ``value``, or None when it is fine.
Rule = Callable[[Any], str | None]

_PHRASES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
}
_WORDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    types = kind if isinstance(kind, tuple) else (kind,)
    return NUMBER if float in types else types  # a float setting takes 1 as well as 1.0


def has_type(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that ``true`` is no number: ``port = true`` is a mistake."""
    if bool not in types and isinstance(value, bool):
        return False
    return isinstance(value, Mapping) if dict in types else isinstance(value, types)


@dataclass(frozen=True)
class Setting:
    """One key of the schema.

    :ivar key: dotted, ``<name>`` for any table name.
    :ivar types: accepted Python types (``dict`` for a table).
    :ivar default: filled in when the key is absent (:data:`MISSING`: stays absent).
    :ivar minimum, maximum: bounds for numbers; ``exclusive_minimum`` makes ``minimum`` itself
        wrong (a timeout of 0).
    :ivar choices: the accepted values (strings compare case-insensitively).
    :ivar rules: further checks, each returning a problem or None.
    :ivar expected: what the type check says is expected (default from ``types``).
    :ivar wrong_type: the type problem's wording, with ``{expected}`` and ``{value}``.
    :ivar provider_type: only for ``providers.<name>`` tables of this ``type``.
    :ivar open: a table whose own keys are free (``mcp.servers.<name>.env``).
    :ivar required: the problem when the key is absent or empty (None: it is optional).
    """

    key: str
    types: tuple[type, ...]
    description: str
    default: Any = MISSING
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    expected: str | None = None
    wrong_type: str = "expected {expected}, got {value!r}"
    provider_type: str | None = None
    open: bool = False
    required: str | None = None

    @property
    def type_phrase(self) -> str:
        """``an integer``, ``a number``, ``a string or a list``..."""
        if self.expected is not None:
            return self.expected
        if self.types == NUMBER:
            return "a number"
        return " or ".join(_PHRASES.get(t, t.__name__) for t in self.types)

    @property
    def type_word(self) -> str:
        """The type as the configuration reference writes it: ``integer``, ``number``..."""
        if self.types == NUMBER:
            return "number"
        return " or ".join(_WORDS.get(t, "table") for t in self.types)

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this key, in words; None when it is fine."""
        if self.required is not None and value == "":
            return self.required
        if not has_type(value, self.types):
            return self.wrong_type.format(expected=self.type_phrase, value=value)
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if self.minimum is not None and isinstance(value, int | float):
            if self.exclusive_minimum and not value > self.minimum:
                return f"must be > {_number(self.minimum)}, got {value!r}"
            if not value >= self.minimum:
                return f"must be >= {_number(self.minimum)}, got {value!r}"
        if self.maximum is not None and isinstance(value, int | float) and value > self.maximum:
            return f"must be <= {_number(self.maximum)}, got {value!r}"
        if self.choices and str(value).lower() not in {c.lower() for c in self.choices}:
            *others, last = self.choices
            return f"expected {', '.join(others)} or {last}, got {value!r}"
        return next((found for rule in self.rules if (found := rule(value))), None)


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def items_of(types: tuple[type, ...], what: str) -> Rule:
    """A rule for lists: every item is one of ``types`` (``what`` names them in the problem)."""

    def check(value: Any) -> str | None:
        bad = next((item for item in value if not has_type(item, types)), MISSING)
        return None if bad is MISSING else f"expected {what}, got item {bad!r}"

    return check


@dataclass(frozen=True)
class Unknown:
    """A key no setting declares, and the closest declared one (for "did you mean")."""

    key: str
    suggestion: str | None

    def __str__(self) -> str:
        hint = f" (did you mean {self.suggestion}?)" if self.suggestion else ""
        return f"unknown setting {self.key}{hint}; it is ignored"


#: The ``register`` callback of the ``register_settings`` hook (:meth:`SettingsRegistry.register`).
RegisterSetting = Callable[..., None]


class SettingsRegistry:
    """Every declared setting, in declaration order (the order errors are reported in)."""

    def __init__(self) -> None:
        self.settings: dict[str, Setting] = {}
        self._implied: set[str] = set()  # tables declared only because a key sits in them

    def register(
        self,
        key: str,
        type: type | tuple[type, ...],
        default: Any = MISSING,
        description: str = "",
        **options: Any,
    ) -> None:
        """Declare ``key`` (the ``register`` callback of ``register_settings``).

        ``options`` are the other fields of :class:`Setting` (``minimum``, ``maximum``,
        ``choices``, ``rules``...). Each table a key sits in is declared too, so a table given
        as a plain value (``cache = 3``) is reported before the keys inside it. The first
        declaration of a key wins.
        """
        key = key.lower()
        parts = key.split(".")
        for end in range(1, len(parts)):
            table = ".".join(parts[:end])
            if table not in self.settings:
                self.settings[table] = Setting(table, (dict,), f"The {table} table.")
                self._implied.add(table)
        if key in self.settings and key not in self._implied:
            return
        self._implied.discard(key)
        self.settings[key] = Setting(key, _types(type), description, default, **options)

    def declared(self) -> list[Setting]:
        """The settings a user sets: all but the tables declared only to hold other keys."""
        return [s for s in self.settings.values() if s.key not in self._implied]

    def get(self, key: str) -> Setting:
        """The setting declared as ``key`` (with its ``<name>`` placeholders)."""
        return self.settings[key.lower()]

    def concrete(self, data: Mapping[str, Any]) -> Iterator[tuple[str, Setting]]:
        """Each setting at each place it applies in ``data``: fixed keys always, ``<name>``
        for every table name present. Keys inside a value that is not a table are left out:
        the table's own check reports it."""
        for setting in self.settings.values():
            for key in _expand(setting.key.split("."), data, ()):
                wanted = setting.provider_type
                if wanted is None or _provider_type(data, key.split(".")[1]) == wanted:
                    yield key, setting

    def unknown(self, data: Mapping[str, Any]) -> list[Unknown]:
        """Every key of ``data`` no setting declares, with the closest declared key.

        A table is open (its keys are not checked) when declared ``open``, and a
        ``providers.<name>`` or ``platforms.<name>`` table is open unless something declared
        keys for that provider type or that very platform: an adapter or provider type that
        declared nothing reads its table its own way.
        """
        known = dict(self.concrete(data))
        open_tables = [k for k, s in known.items() if s.open or not self._closed(k, data)]
        candidates = [k for k, s in known.items() if s.key not in self._implied]
        found: list[Unknown] = []
        for key in _leaves(data, ()):
            if key in known or any(key.startswith(f"{table}.") for table in open_tables):
                continue
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
            found.append(Unknown(key, close[0] if close else None))
        return found

    def _closed(self, table: str, data: Mapping[str, Any]) -> bool:
        parts = table.split(".")
        if len(parts) != 2 or parts[0] not in ("providers", "platforms"):
            return True
        settings = [s for s in self.settings.values() if s.key not in self._implied]
        if parts[0] == "providers":
            kind = _provider_type(data, parts[1])
            return any(s.provider_type == kind for s in settings)
        return any(s.key.startswith(f"{table}.") for s in settings)

    def check_table(self, prefix: str, values: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(key, problem)`` for a table given as a mapping rather than in the settings (a
        plugin's MCP server spec): its keys in declaration order, then keys it should not
        have. Keys are relative to the table."""
        own = {
            s.key.removeprefix(f"{prefix}."): s
            for s in self.settings.values()
            if s.key.startswith(f"{prefix}.") and "." not in s.key.removeprefix(f"{prefix}.")
        }
        problems = [
            (key, problem)
            for key, setting in own.items()
            if key in values and (problem := setting.problem(values[key]))
        ]
        known = ", ".join(own)
        problems += [(key, f"unknown key (known: {known})") for key in values if key not in own]
        return problems


def _expand(parts: Sequence[str], node: Any, path: tuple[str, ...]) -> Iterator[str]:
    if not parts:
        yield ".".join(path)
        return
    head, rest = parts[0], parts[1:]
    if node is not None and not isinstance(node, Mapping):
        return  # inside a plain value: the table's own check reports that
    if head == NAME:
        for name, child in (node or {}).items():
            yield from _expand(rest, child, (*path, str(name)))
    else:
        yield from _expand(rest, (node or {}).get(head) if rest else None, (*path, head))


def _leaves(node: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[str]:
    for key, value in node.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, (*path, str(key)))
        else:
            yield ".".join((*path, str(key)))


def _provider_type(data: Mapping[str, Any], name: str) -> str | None:
    """The ``type`` of ``providers.<name>`` (``openai`` unless it says otherwise)."""
    providers = data.get("providers")
    table = providers.get(name) if isinstance(providers, Mapping) else None
    kind = table.get("type", "openai") if isinstance(table, Mapping) else None
    return kind.lower() if isinstance(kind, str) else None
