"""The hot path's JSON: orjson when installed, the stdlib otherwise, with the same values and
the stdlib's answer (or error) for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hermes_core import json_codec

VALUES: list[Any] = [
    {"model": "ok", "messages": [{"role": "user", "content": "héllo 日本"}], "n": 1, "t": 0.5},
    {"usage": None, "ok": True, "list": [1, 2.25, "x", None, False]},
    {"seed": 10**30},  # beyond 64 bits: orjson refuses it, the stdlib writes it
]


@pytest.fixture(params=["installed", "stdlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test with orjson (when the fast extra installed it) and with the stdlib alone."""
    if request.param == "stdlib":
        monkeypatch.setattr(json_codec, "orjson", None)
    elif json_codec.orjson is None:
        pytest.skip("orjson is not installed (the fast extra)")
    return str(request.param)


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_compact_utf8_the_stdlib_reads_back(codec: str, value: Any) -> None:
    data = json_codec.dumps(value)
    assert data == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(data) == value


@pytest.mark.parametrize("value", VALUES)
def test_loads_reads_what_the_stdlib_reads(codec: str, value: Any) -> None:
    data = json.dumps(value).encode()
    assert json_codec.loads(data) == json.loads(data)


def test_loads_takes_what_only_the_stdlib_takes(codec: str) -> None:
    """A lone surrogate escape and a 40-digit integer: orjson refuses both."""
    data = b'{"content": "a \\ud800", "big": 1234567890123456789012345678901234567890}'
    assert json_codec.loads(data) == json.loads(data)


def test_not_json_raises_the_stdlibs_error(codec: str) -> None:
    with pytest.raises(json.JSONDecodeError) as error:
        json_codec.loads(b"<html>bad gateway</html>")
    assert str(error.value) == "Expecting value: line 1 column 1 (char 0)"
