"""JSON on the hot path: orjson when the ``fast`` extra installed it, the stdlib otherwise.

A run encodes its upstream request and its reply and decodes the upstream's answer: with the
stdlib that is 15-20 µs of a request, with orjson 2-3 µs. Both give the same values: what
orjson refuses (an integer beyond 64 bits, a lone surrogate) or would read otherwise (it reads
a long integer as a float) goes to the stdlib, so the answer, or the error, is the stdlib's.
Only NaN and the infinities differ: orjson writes them as ``null``, the stdlib as ``NaN``
(which is not JSON).
"""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson  # type: ignore[import-not-found, unused-ignore]  # the fast extra
except ImportError:
    orjson = None  # type: ignore[assignment, unused-ignore]

#: A run of digits that may be an integer orjson reads as a float (beyond 64 bits).
_LONG_DIGITS = re.compile(rb"\d{19}")


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (``json.dumps(..., ensure_ascii=False,
    separators=(",", ":"))``)."""
    if orjson is not None:
        try:
            encoded: bytes = orjson.dumps(value)  # typed here whether or not orjson is installed
            return encoded
        except TypeError:  # orjson.JSONEncodeError: what only the stdlib takes, or refuses
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    """The value of the JSON document ``data``; ``ValueError`` (``json.JSONDecodeError``)
    with the stdlib's message when it is not one."""
    if orjson is not None and not _LONG_DIGITS.search(data):
        try:
            return orjson.loads(data)
        except ValueError:  # orjson.JSONDecodeError: let the stdlib decide, and say why
            pass
    return json.loads(data)
