"""JSON from untrusted clients, refused with the field at fault instead of crashing.

``json.loads`` alone raises ``RecursionError`` on a body nested 100,000 deep, a plain
``ValueError`` on an integer of more than 4,300 digits, and accepts ``"\\ud800"`` escapes that
no store, header or model can take. :func:`loads` refuses each with a :class:`JsonProblem`
naming where it is (``messages[0].content``) and the top-level field it belongs to.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hermes_core import json_codec

#: Deepest nesting of arrays and objects accepted (a chat request needs 5).
MAX_DEPTH = 64
#: Most digits accepted in an integer (a 64-bit number has 20).
MAX_INT_DIGITS = 100

#: A string literal with its escapes removed, or one structural character.
_TOKENS = re.compile(r'"[^"]*"|[\[\]{}:]')
#: More digits in a row than an accepted integer has.
_LONG_DIGITS = re.compile(rf"\d{{{MAX_INT_DIGITS + 1}}}")


class JsonProblem(ValueError):
    """Valid JSON that a client must not send; ``field`` is the top-level key it is under."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = None if field is None else _short(field)


class _LongInteger:
    """Stands in for an integer with too many digits until the walk reports where it is."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def loads(body: bytes) -> Any:
    """Parse ``body``. Raises ``UnicodeDecodeError``/``json.JSONDecodeError`` for what is not
    JSON, :class:`JsonProblem` for JSON nested too deep, with a too-long integer, or with a lone
    surrogate in any string or key."""
    encoding = json.detect_encoding(body)
    text = body.decode(encoding, "surrogatepass")  # as json.loads does
    too_deep, field = _depth_exceeded(text)
    if too_deep:
        where = describe([field]) if field else "the request body"
        raise JsonProblem(f"{where} is nested deeper than {MAX_DEPTH} levels", field)
    if _may_be_refused(text):
        data = json.loads(text, parse_int=_parse_int)
        _check(data, [])
        return data
    # Nothing in it to refuse: the fast decoder (orjson with the fast extra) reads UTF-8.
    return json_codec.loads(body) if encoding == "utf-8" else json.loads(text)


def _may_be_refused(text: str) -> bool:
    """Whether the parsed body can hold what :func:`_check` refuses: a lone surrogate comes
    from a ``\\u`` escape or is in the text itself, a long integer is a long run of digits.
    Most bodies have neither, and skip the walk of every value (about 10 µs a request)."""
    if "\\u" in text or _LONG_DIGITS.search(text):
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def describe(path: list[str | int]) -> str:
    """``messages[0].content`` for a nested path; a top-level field in backticks."""
    if not path:
        return "the request body"
    if len(path) == 1:
        return f"`{_short(str(path[0]))}`"
    text = _short(str(path[0]))
    for step in path[1:]:
        text += f"[{step}]" if isinstance(step, int) else f".{_short(step)}"
    return text


def _short(name: str) -> str:
    """A client's key as shown in an error message: at most 40 characters."""
    return name if len(name) <= 40 else name[:39] + "…"


def _parse_int(digits: str) -> int | _LongInteger:
    count = len(digits.lstrip("-"))
    return _LongInteger(count) if count > MAX_INT_DIGITS else int(digits)


def _depth_exceeded(text: str) -> tuple[bool, str | None]:
    """Whether nesting passes :data:`MAX_DEPTH` (checked before parsing, which would recurse),
    and the top-level key it happens under."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False, None
    # Without escapes, a string is just quote to quote: the scan stays a fast regex.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    depth, key, last_string = 0, None, None
    for token in _TOKENS.finditer(unescaped):
        char = token.group()[0]
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True, key
        elif char in "]}":
            depth -= 1
        elif char == ":":
            if depth == 1 and last_string is not None:
                key = _string_value(last_string)
        else:
            last_string = token.group()
    return False, None


def _string_value(literal: str) -> str:
    try:
        value = json.loads(literal)
    except ValueError:
        return literal.strip('"')
    return str(value)


def _check(value: Any, path: list[str | int]) -> None:
    field = str(path[0]) if path else None
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, _LongInteger):
        raise JsonProblem(
            f"{describe(path)} is an integer of {value.digits} digits; "
            f"at most {MAX_INT_DIGITS} are accepted",
            field,
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path, what=f"a key of {describe(path)}" if path else "a key")
            _check(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, [*path, index])


def _check_text(text: str, path: list[str | int], what: str | None = None) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise JsonProblem(
            f"{what or describe(path)} is not valid Unicode: a lone surrogate "
            f"{text[error.start]!r} at character {error.start}",
            str(path[0]) if path else None,
        ) from None
