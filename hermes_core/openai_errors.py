"""How an OpenAI-compatible endpoint's failures map to the contract's ``error_kind``.

Classification follows nanobot's: a status decides the kind, and the body can turn a
retryable status permanent (quota, billing) or a permanent one transient (a proxy's 403
"try again in 2m" is not a dead key).
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from hermes_core.providers import ProviderError
from hermes_core.types import ErrorKind

PERMANENT_MARKERS = ("insufficient_quota", "quota", "billing")
TRANSIENT_MARKERS = ("try again", "temporarily", "overloaded")
#: Statuses an upstream that cannot stream answers ``"stream": true`` with.
STREAM_REJECTED_STATUSES = frozenset({400, 404, 415, 422, 501})


def _seconds(text: str) -> float | None:
    """A non-negative number of seconds; None for anything else (``soon``, ``nan``, ``-1``)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _http_date_wait(text: str) -> float | None:
    """Seconds from now until an HTTP date (RFC 9110), None when ``text`` is not one."""
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" parses naive, and HTTP dates are UTC
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, moment.timestamp() - time.time())


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait, from ``retry-after-ms`` or ``retry-after``.

    ``Retry-After`` holds seconds or an HTTP date; anything else is ignored, so the run loop
    falls back to its own backoff rather than failing on an upstream's quirk.
    """
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None and (value := _seconds(millis)) is not None:
        return value / 1000
    text = (headers.get("retry-after") or "").strip()
    if not text:
        return None
    seconds = _seconds(text)
    return seconds if seconds is not None else _http_date_wait(text)


def classify_status(status: int, body_text: str) -> ErrorKind:
    """Map an HTTP status (and its body) to an ``error_kind``."""
    text = body_text.lower()
    if status == 429:
        return "non_retryable" if any(m in text for m in PERMANENT_MARKERS) else "rate_limit"
    if status in (401, 403):
        return "rate_limit" if any(m in text for m in TRANSIENT_MARKERS) else "auth"
    if status == 408:
        return "timeout"
    if status == 409 or status >= 500:
        return "server"
    return "non_retryable"


def error_message(body: bytes) -> str:
    """The human part of an error body: OpenAI's ``error.message``, else the text itself."""
    text = body.decode(errors="replace")
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200] or "(empty body)"
    detail = decoded.get("error", decoded) if isinstance(decoded, dict) else decoded
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    if isinstance(detail, str) and detail:
        return detail
    return " ".join(text.split())[:200]


def status_error(status: int, body: bytes, headers: Mapping[str, str], where: str) -> ProviderError:
    """The ProviderError for a non-2xx response from ``where`` (``provider:model``)."""
    message = error_message(body)
    return ProviderError(
        classify_status(status, f"{message} {body.decode(errors='replace')}"),
        f"HTTP {status} from {where}: {message}",
        status=status,
        retry_after=retry_after_seconds(headers),
    )


def rejects_streaming(error: ProviderError) -> bool:
    """Whether ``error`` says the upstream cannot stream, rather than that the request is bad."""
    return error.status in STREAM_REJECTED_STATUSES and "stream" in str(error).lower()
