"""The names MCP tools are offered under: ``<server>__<tool>``, in the API's alphabet."""

from __future__ import annotations

import hashlib
import re

from hermes_core.tools import TOOL_NAME_PATTERN

SEPARATOR = "__"
MAX_NAME = 64
_DISALLOWED = re.compile(r"[^A-Za-z0-9_-]")
_HASH_CHARS = 8


def offered_name(server: str, tool: str) -> str:
    """``<server>__<tool>`` with disallowed characters replaced by ``_``.

    A name over 64 characters is cut and ends in a short hash of the full name, so two long
    names that share a prefix still differ.
    """
    name = _DISALLOWED.sub("_", f"{server}{SEPARATOR}{tool}")
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_CHARS]
        name = f"{name[: MAX_NAME - _HASH_CHARS - 1]}_{digest}"
    assert TOOL_NAME_PATTERN.match(name), name
    return name
