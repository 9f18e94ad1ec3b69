"""The data that flows through a run: inbound messages, sessions and the typed run result."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypedDict, TypeVar

if TYPE_CHECKING:
    from hermes_core.run_request import RunRequest

ErrorKind = Literal[
    "non_retryable",
    "auth",
    "rate_limit",
    "timeout",
    "server",
    "connection",
    "tool",
    "circuit_open",
    "unavailable",
    "internal",
]

#: Error kinds that a retry or a fallback cannot fix: the request itself is wrong.
NON_RETRYABLE_KINDS: frozenset[str] = frozenset({"non_retryable", "auth"})
#: Error kinds worth retrying on the same model before failing over.
RETRYABLE_KINDS: frozenset[str] = frozenset({"rate_limit", "timeout", "server", "connection"})


class Usage(TypedDict):
    """Tokens of a run, summed over its requests, as the upstream counted them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


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
    usage: Usage | None


_RESULT_KEYS = frozenset(RunResult.__annotations__)


def make_result(**fields: Any) -> RunResult:
    """Build a RunResult with every contract key, defaults filled in for the ones not given.

    ``pre_run`` implementations may return a partial dict; this completes it so ``post_run``
    and platforms can always index every key.
    """
    if not _RESULT_KEYS.issuperset(fields):
        raise TypeError(f"unknown RunResult keys: {sorted(set(fields) - _RESULT_KEYS)}")
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
        "usage": None,
    }
    result.update(fields)  # type: ignore[typeddict-item]
    return result


def new_id() -> str:
    """A random 128-bit id as 32 hex digits, like ``uuid.uuid4().hex`` without building a
    ``UUID`` (0.8 against 7 µs: a run makes three)."""
    return os.urandom(16).hex()


@dataclass(frozen=True)
class Message:
    """One inbound message from a platform; ``request`` holds a platform's per-run options
    (:class:`hermes_core.run_request.RunRequest`: parameters, client tools, stateless)."""

    text: str
    platform: str
    session_key: str
    user_id: str
    id: str = field(default_factory=new_id)
    received_at: float = field(default_factory=time.time)
    request: RunRequest | None = None


@dataclass
class Session:
    """A conversation's identity and durable state; outlives any cached agent.

    ``data`` is per-plugin state, namespaced by plugin name, stored with the session and
    cleared by ``/reset`` and ``/new``; plugins reach their own part through a
    :class:`SessionState`.

    ``version`` is the stored row's version, bumped by every write of it (each run, ``/reset``,
    ``/model``): another process that ran the session since is seen by a changed version, and a
    write from a stale copy is refused (see :class:`hermes_core.store.StaleSession`).
    """

    key: str
    platform: str
    user_id: str | None = None
    model: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    conversation: int = 0
    created_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.time)
    version: int = 0


@dataclass(frozen=True)
class Reply:
    """What the gateway hands back to a platform for one message."""

    text: str
    result: RunResult | None = None
    command: str | None = None

    @property
    def failed(self) -> bool:
        return self.result is not None and self.result["failed"]


StateT = TypeVar("StateT")


class SessionState(Generic[StateT]):
    """A plugin's typed state in ``session.data[name]``: a dataclass of JSON-ready fields.

    ``BREAKER = SessionState("circuit_breaker", BreakerState)``; ``BREAKER.get(session)``
    returns the state (the defaults when none is stored) and ``BREAKER.put(session, state)``
    stores it. Only the plugin named ``name`` should write it.
    """

    def __init__(self, name: str, type_: type[StateT]) -> None:
        if not dataclasses.is_dataclass(type_):
            raise TypeError(f"SessionState needs a dataclass, got {type_!r}")
        self.name = name
        self.type = type_
        self._fields = {f.name for f in dataclasses.fields(type_)}

    def get(self, session: Session) -> StateT:
        stored = session.data.get(self.name)
        values = {k: v for k, v in stored.items() if k in self._fields} if stored else {}
        return self.type(**values)

    def put(self, session: Session, state: StateT) -> None:
        session.data[self.name] = dataclasses.asdict(state)  # type: ignore[call-overload]
