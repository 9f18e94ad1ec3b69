"""Chat-completions request parameters: each one forwarded, refused or ignored, never dropped.

:func:`request_params` checks a request's fields and returns the ones forwarded to the
upstream (on every request of the run); a field that cannot be honoured raises
:class:`ParamProblem` naming it. :class:`ParameterPolicy` is the operator's
``platforms.http.parameters`` table: values pinned, defaults, and forbidden names.
docs/platforms.md has the whole table of fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hermes_core.platforms import PlatformSettings

#: Fields the gateway reads itself: not parameters of the model's requests.
HANDLED = frozenset({"messages", "model", "stream", "stream_options", "user", "tools"})
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
#: The most ``stop`` sequences OpenAI accepts.
MAX_STOP = 4


class ParamProblem(ValueError):
    """A request field the gateway refuses; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


#: A check returns what is wrong with a value (to follow "`name` must be ..."), or None.
Check = Callable[[Any], str | None]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(minimum: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return "an integer"
        return None if minimum is None or value >= minimum else f"an integer >= {minimum}"

    return check


def _between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        return None if _is_number(value) and low <= value <= high else f"a number {low}..{high}"

    return check


def _of_type(kind: type, what: str) -> Check:
    return lambda value: None if isinstance(value, kind) else what


def _stop(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    strings = isinstance(value, list) and all(isinstance(item, str) for item in value)
    return None if strings and 1 <= len(value) <= MAX_STOP else "a string or 1-4 strings"


def _logit_bias(value: Any) -> str | None:
    numbers = isinstance(value, dict) and all(
        _is_number(bias) and -100 <= bias <= 100 for bias in value.values()
    )
    return None if numbers else "an object of token ids to numbers -100..100"


def _response_format(value: Any) -> str | None:
    if not isinstance(value, dict) or value.get("type") not in RESPONSE_FORMATS:
        return f"an object whose `type` is one of {', '.join(RESPONSE_FORMATS)}"
    schema = value.get("json_schema")
    if value["type"] == "json_schema" and not (
        isinstance(schema, dict) and isinstance(schema.get("name"), str)
    ):
        return "a json_schema format with a `json_schema` object naming its `name`"
    return None


def _tool_choice(value: Any) -> str | None:
    if value in TOOL_CHOICES:
        return None
    function = value.get("function") if isinstance(value, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return None
    return f"one of {', '.join(TOOL_CHOICES)} or {{type: function, function: {{name}}}}"


def _metadata(value: Any) -> str | None:
    strings = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return None if strings else "an object of strings"


#: Forwarded to the upstream as sent, once checked.
FORWARDED: dict[str, Check] = {
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "temperature": _between(0, 2),
    "top_p": _between(0, 1),
    "stop": _stop,
    "seed": _integer(),
    "presence_penalty": _between(-2, 2),
    "frequency_penalty": _between(-2, 2),
    "logit_bias": _logit_bias,
    "response_format": _response_format,
    "reasoning_effort": _of_type(str, "a string"),
    "parallel_tool_calls": _of_type(bool, "a boolean"),
    "tool_choice": _tool_choice,
    "metadata": _metadata,
    "service_tier": _of_type(str, "a string"),
    "store": _of_type(bool, "a boolean"),
}

#: Refused when set to anything but their default, with the reason.
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n": (lambda v: v != 1, "only n = 1 is supported: each request runs one conversation"),
    "logprobs": (lambda v: v is not False, "log probabilities are not returned by the gateway"),
    "top_logprobs": (lambda v: True, "log probabilities are not returned by the gateway"),
    "audio": (lambda v: True, "audio output is not supported"),
    "modalities": (lambda v: v != ["text"], "only text output is supported"),
    "prediction": (lambda v: True, "predicted outputs are not supported"),
    "web_search_options": (lambda v: True, "web search is not supported"),
    "functions": (lambda v: True, "`functions` is deprecated: declare them in `tools`"),
    "function_call": (lambda v: True, "`function_call` is deprecated: use `tool_choice`"),
}


def check_value(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the forwarded parameter ``name``, or None."""
    expected = FORWARDED[name](value)
    return None if expected is None else f"`{name}` must be {expected}, got {value!r}"[:200]


def request_params(data: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of request ``data`` to forward; raises :class:`ParamProblem`."""
    params: dict[str, Any] = {}
    for name, value in data.items():
        if name in HANDLED or value is None:  # null is how some clients say "not set"
            continue
        if name in FORWARDED:
            if (problem := check_value(name, value)) is not None:
                raise ParamProblem(problem, name)
            params[name] = value
        elif name in REFUSED:
            refused, reason = REFUSED[name]
            if refused(value):
                raise ParamProblem(f"`{name}` cannot be honoured: {reason}", name)
        else:
            raise ParamProblem(f"Unrecognized request argument supplied: {name}"[:120], name)
    return params


@dataclass(frozen=True)
class ParameterPolicy:
    """``platforms.http.parameters``: ``pin`` (always sent, whatever the client asks),
    ``default`` (sent when the client sends none) and ``forbid`` (refused with a 400)."""

    pin: dict[str, Any] = field(default_factory=dict)
    default: dict[str, Any] = field(default_factory=dict)
    forbid: frozenset[str] = frozenset()

    @classmethod
    def load(cls, settings: PlatformSettings) -> ParameterPolicy:
        """Read and check the table; a ConfigError names the key at fault."""
        key = "parameters"
        table = settings.values.get(key, {})
        if not isinstance(table, Mapping):
            raise settings.error(
                key, "expected a table {pin = {...}, default = {...}, forbid = [...]}"
            )
        unknown = sorted(set(table) - {"pin", "default", "forbid"})
        if unknown:
            raise settings.error(f"{key}.{unknown[0]}", "unknown key: use pin, default or forbid")
        pin, default = (_values(settings, table, part) for part in ("pin", "default"))
        forbid = table.get("forbid", [])
        if not isinstance(forbid, list) or not all(isinstance(name, str) for name in forbid):
            raise settings.error(f"{key}.forbid", "expected a list of parameter names")
        for name in forbid:
            if name not in FORWARDED:
                raise settings.error(f"{key}.forbid", f"{name!r} is no forwarded parameter")
            if name in pin:
                raise settings.error(f"{key}.forbid", f"{name!r} is pinned too; choose one")
        return cls(pin, default, frozenset(forbid))

    def apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters sent upstream for a request's ``params``; raises
        :class:`ParamProblem` for a forbidden one."""
        for name in params:
            if name in self.forbid:
                raise ParamProblem(
                    f"`{name}` is not accepted by this server (platforms.http.parameters.forbid)",
                    name,
                )
        return {**self.default, **params, **self.pin}


def _values(settings: PlatformSettings, table: Mapping[str, Any], part: str) -> dict[str, Any]:
    values = table.get(part, {})
    where = f"parameters.{part}"
    if not isinstance(values, Mapping):
        raise settings.error(where, "expected a table of parameter = value")
    for name, value in values.items():
        if name not in FORWARDED:
            known = ", ".join(FORWARDED)
            raise settings.error(f"{where}.{name}", f"not a forwarded parameter ({known})")
        if (problem := check_value(name, value)) is not None:
            raise settings.error(f"{where}.{name}", problem)
    return dict(values)
