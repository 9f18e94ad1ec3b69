"""The data that flows through a run: inbound messages, sessions and the typed run result."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from hermes_core.settings import Config

ErrorKind = Literal[
    "non_retryable",
    "auth",
    "rate_limit",
    "timeout",
    "server",
    "connection",
    "tool",
    "circuit_open",
    "internal",
]

#: Error kinds that a retry or a fallback cannot fix: the request itself is wrong.
NON_RETRYABLE_KINDS: frozenset[str] = frozenset({"non_retryable", "auth"})
#: Error kinds worth retrying on the same model before failing over.
RETRYABLE_KINDS: frozenset[str] = frozenset({"rate_limit", "timeout", "server", "connection"})


class RunResult(TypedDict):
    """The outcome of one agent run, handed to ``post_run`` and returned to the platform.

    Every key is always present, whether the run failed or not.
    """

    failed: bool
    final_response: str | None
    error: str | None
    error_kind: ErrorKind | None
    model: str | None
    primary_model: str | None
    fallback_used: bool
    api_calls: int
    tool_calls: int
    duration_s: float


def make_result(**fields: Any) -> RunResult:
    """Build a RunResult with every contract key, defaults filled in for the ones not given.

    ``pre_run`` implementations may return a partial dict; this completes it so ``post_run``
    and platforms can always index every key.
    """
    unknown = set(fields) - set(RunResult.__annotations__)
    if unknown:
        raise TypeError(f"unknown RunResult keys: {sorted(unknown)}")
    result: RunResult = {
        "failed": False,
        "final_response": None,
        "error": None,
        "error_kind": None,
        "model": None,
        "primary_model": None,
        "fallback_used": False,
        "api_calls": 0,
        "tool_calls": 0,
        "duration_s": 0.0,
    }
    result.update(fields)  # type: ignore[typeddict-item]
    return result


@dataclass(frozen=True)
class Message:
    """One inbound message from a platform."""

    text: str
    platform: str
    session_key: str
    user_id: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at: float = field(default_factory=time.time)


@dataclass
class Session:
    """A conversation's identity and durable state; outlives any cached agent.

    ``data`` is per-plugin state (the circuit breaker keeps its count here), namespaced by
    plugin name and cleared by ``/reset`` and ``/new``. ``config`` is the gateway's settings,
    so plugins can read their own section (as pytest items carry ``.config``).
    """

    key: str
    platform: str
    user_id: str | None = None
    model: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    conversation: int = 0
    created_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.time)
    config: Config | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Reply:
    """What the gateway hands back to a platform for one message."""

    text: str
    result: RunResult | None = None
    command: str | None = None

    @property
    def failed(self) -> bool:
        return self.result is not None and self.result["failed"]
