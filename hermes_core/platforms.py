"""Platform adapters: the interface an adapter implements, the registry of factories, and the
two helpers every adapter uses.

An adapter is built by a factory ``factory(gateway, settings)`` registered through the
``register_platforms`` hook, and has three coroutines: :meth:`Platform.start`,
:meth:`Platform.stop` and :meth:`Platform.wait_closed`. Between them it turns what it receives
into :class:`~hermes_core.types.Message` objects and sends each reply back where the message
came from. Two helpers make the common mistakes hard to make:

- :class:`PlatformSettings` (from :mod:`hermes_core.platform_settings`) reads the keys of
  ``platforms.<name>`` an adapter did not declare with ``register_settings``, with the same
  checks, so a wrong value stops start-up with one line naming the key (exit code 2).
- :class:`~hermes_core.intake.Intake` (importable from here too) hands messages to the
  gateway: it applies ``platforms.<name>.allow_users``, keeps runs off the adapter's own tasks
  (a disconnecting client never cancels a run), sends the optional typing signal, delivers the
  replies of one session in order, and on shutdown stops taking messages and finishes the runs
  in flight within ``platforms.<name>.stop_grace_s``.

See ``docs/platforms.md`` for a complete adapter walked through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger

# Adapters import the Intake and its types from here, as before it had a module of its own.
from hermes_core.intake import (
    REFUSAL,
    Deliver,
    DeliverStream,
    Intake,
    IntakeClosed,
    Refusal,
    TypingSignal,
)
from hermes_core.platform_settings import DEFAULT_STOP_GRACE_S, PlatformSettings

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway

__all__ = [
    "DEFAULT_STOP_GRACE_S",
    "REFUSAL",
    "Deliver",
    "DeliverStream",
    "Intake",
    "IntakeClosed",
    "Platform",
    "PlatformFactory",
    "PlatformRegistry",
    "PlatformSettings",
    "Refusal",
    "RegisterPlatform",
    "TypingSignal",
    "session_key",
    "session_owner",
]


def session_key(platform: str, session_id: str, owner: str | None = None) -> str:
    """``<platform>:<session_id>``, or ``<platform>@<owner>:<session_id>`` for a session that
    belongs to one authenticated client (an HTTP API key), so that two clients naming the same
    session get two sessions. Owner names hold no ``:`` or ``@``."""
    return f"{platform}@{owner}:{session_id}" if owner else f"{platform}:{session_id}"


def session_owner(key: str) -> str | None:
    """The owner :func:`session_key` put into ``key``, or None."""
    prefix, colon, _ = key.partition(":")
    _, at, owner = prefix.partition("@")
    return owner if colon and at else None


class Platform(Protocol):
    """A chat front end. It turns what it receives into :class:`hermes_core.types.Message`,
    awaits ``gateway.handle(message)`` (usually through an :class:`Intake`) and delivers the
    reply to the chat the message came from.

    An adapter may also offer ``check()`` (plain or async) for ``hermes-core doctor``: called on
    a built adapter that was never started, it looks at what a start depends on without
    serving anything (can the port be bound, does the server answer) and returns a
    :class:`PlatformCheck`: the problems found, one line each (none: ready), and a line saying
    what was checked. It is optional, so it is not a member of this Protocol; doctor calls it
    when the adapter has one.
    """

    async def start(self) -> None:
        """Begin taking messages; return once running (do not block until done).

        Raise to report that the platform cannot run (server unreachable, port taken): the
        runner logs it and keeps the other platforms going.
        """
        ...

    async def stop(self) -> None:
        """Stop taking messages and finish what is in flight within a bounded grace period;
        deliver those replies, then release every connection and task. Idempotent."""
        ...

    async def wait_closed(self) -> None:
        """Return when the platform has nothing more to do (the console at end of input).
        Servers that run until stopped return only after :meth:`stop`."""
        ...


@dataclass(frozen=True)
class PlatformCheck:
    """What a platform's optional ``check()`` found (see :class:`Platform`)."""

    problems: list[str]
    summary: str = "ready"


PlatformFactory = Callable[["Gateway", Mapping[str, Any]], Platform]
RegisterPlatform = Callable[[str, PlatformFactory], None]


class PlatformRegistry:
    """Adapter factories by platform name."""

    def __init__(self) -> None:
        self.factories: dict[str, PlatformFactory] = {}

    def register(self, name: str, factory: PlatformFactory) -> None:
        """The ``register`` callback handed to ``register_platforms``.

        The first registration of a name wins: built-ins register last, so a plugin that
        registers ``console`` or ``http`` replaces the built-in adapter.
        """
        if name in self.factories:
            logger.debug("platform {} already registered; keeping the first", name)
            return
        self.factories[name] = factory
