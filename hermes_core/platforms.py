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
- :class:`Intake` hands messages to the gateway: it applies ``platforms.<name>.allow_users``,
  keeps runs off the adapter's own tasks (a disconnecting client never cancels a run), sends the
  optional typing signal, delivers the replies of one session in order, and on shutdown stops
  taking messages and finishes the runs in flight within ``platforms.<name>.stop_grace_s``.

See ``docs/platforms.md`` for a complete adapter walked through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger

from hermes_core.errors import HermesError
from hermes_core.platform_settings import DEFAULT_STOP_GRACE_S, PlatformSettings
from hermes_core.types import Reply

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.types import Message

__all__ = ["PlatformSettings"]  # adapters import it from here, beside Intake

#: What a user outside ``platforms.<name>.allow_users`` reads; no run happens.
REFUSAL = (
    "Sorry, I can only answer people on this assistant's allow list. "
    "Please ask its operator for access."
)


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

#: A typing/"working" signal: awaited while a run takes a while (see :class:`Intake`).
TypingSignal = Callable[[], Awaitable[None]]
#: Sends one reply back to where its message came from.
Deliver = Callable[[Reply], Awaitable[None]]


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


class IntakeClosed(HermesError):
    """The platform is stopping and takes no new messages (HTTP answers 503)."""


class Intake:
    """Hands a platform's inbound messages to the gateway.

    - **Allow list**: ``platforms.<name>.allow_users`` (empty: everyone). A message from anyone
      else gets :data:`REFUSAL` and never reaches a run.
    - **Runs outlive their requester**: each run is its own task. If the adapter's task awaiting
      :meth:`handle` is cancelled (an HTTP client hung up), the run still finishes and its
      answer joins the session's history, so the history never holds a half-done turn.
    - **Typing signal**: pass ``typing`` and it is awaited once a run has taken
      ``typing_after_s``, then every ``typing_every_s`` (``None``: once) until the reply is ready.
    - **Push platforms** (IRC, chat bots) call :meth:`submit` with a ``deliver`` callback bound
      to the chat the message came from: replies of one session are delivered in arrival order,
      and a reply cannot go to another chat.
    - **Shutdown**: :meth:`close` stops intake (:meth:`handle` then raises
      :class:`IntakeClosed`), waits up to ``platforms.<name>.stop_grace_s`` for runs in flight
      and their deliveries, then cancels what is left.
    """

    def __init__(
        self,
        gateway: Gateway,
        settings: PlatformSettings,
        *,
        typing_after_s: float = 1.0,
        typing_every_s: float | None = 5.0,
    ) -> None:
        self.gateway = gateway
        self.platform = settings.name
        self.allow_users = frozenset(settings.strings("allow_users"))
        self.grace_s = settings.number("stop_grace_s", DEFAULT_STOP_GRACE_S, minimum=0)
        self.typing_after_s = typing_after_s
        self.typing_every_s = typing_every_s
        self._accepting = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_delivery: dict[str, asyncio.Task[None]] = {}

    @property
    def accepting(self) -> bool:
        """False once :meth:`close` has been called."""
        return self._accepting

    @property
    def in_flight(self) -> int:
        """Runs and deliveries not finished yet."""
        return len(self._tasks)

    def allows(self, user_id: str) -> bool:
        """Whether ``user_id`` may talk to the agent on this platform."""
        return not self.allow_users or user_id in self.allow_users

    async def handle(self, message: Message, typing: TypingSignal | None = None) -> Reply:
        """Run ``message`` through the gateway and return the reply (a refusal for users not
        on the allow list). Raises :class:`IntakeClosed` once the platform is stopping."""
        if not self._accepting:
            raise IntakeClosed(f"platform {self.platform} is shutting down")
        if not self.allows(message.user_id):
            return self._refuse(message)
        return await self._await_run(self._spawn_run(message), typing)

    def submit(
        self, message: Message, deliver: Deliver, typing: TypingSignal | None = None
    ) -> bool:
        """Run ``message`` in the background and ``await deliver(reply)`` when it is done.

        Returns False (and drops the message, with a log line) once the platform is stopping.
        """
        if not self._accepting:
            logger.warning(
                "platform {} is stopping; dropped a message for session {}",
                self.platform,
                message.session_key,
            )
            return False
        # The run task is created now, not inside the delivery task, so runs of one session
        # reach the gateway's session lock in the order the messages arrived.
        run = self._spawn_run(message) if self.allows(message.user_id) else None
        key = message.session_key
        previous = self._last_delivery.get(key)
        delivery = self._track(
            asyncio.create_task(self._deliver(message, run, deliver, typing, previous))
        )
        self._last_delivery[key] = delivery

        def forget(task: asyncio.Task[None]) -> None:
            if self._last_delivery.get(key) is task:
                del self._last_delivery[key]

        delivery.add_done_callback(forget)
        return True

    async def close(self, grace_s: float | None = None) -> None:
        """Stop intake, wait up to ``grace_s`` (default ``stop_grace_s``) for runs and
        deliveries in flight, then cancel the rest. Idempotent."""
        self._accepting = False
        grace = self.grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        # Deliveries may be added while runs finish (none new: intake is closed), so loop
        # until the set is empty or time is up.
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
        if self._tasks:
            logger.warning(
                "platform {}: cancelling {} run(s) still in flight after {}s",
                self.platform,
                len(self._tasks),
                grace,
            )
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # --- internals -----------------------------------------------------------------------

    def _refuse(self, message: Message) -> Reply:
        logger.info(
            "platform {}: user {!r} is not in platforms.{}.allow_users; refused",
            self.platform,
            message.user_id,
            self.platform,
        )
        return Reply(REFUSAL)

    def _track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn_run(self, message: Message) -> asyncio.Task[Reply]:
        task: asyncio.Task[Reply] = self._track(
            asyncio.create_task(
                self.gateway.handle(message), name=f"hermes-core run {message.session_key}"
            )
        )
        return task

    async def _await_run(self, run: asyncio.Task[Reply], typing: TypingSignal | None) -> Reply:
        async with self._typing(typing):
            # shield: cancelling the requester must not cancel the run itself.
            return await asyncio.shield(run)

    async def _deliver(
        self,
        message: Message,
        run: asyncio.Task[Reply] | None,
        deliver: Deliver,
        typing: TypingSignal | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        reply = self._refuse(message) if run is None else await self._await_run(run, typing)
        if previous is not None:
            await asyncio.wait({previous})  # the earlier reply of this session goes out first
        try:
            await deliver(reply)
        except Exception as error:
            logger.opt(exception=error).error(
                "platform {} could not deliver the reply for session {}: {}",
                self.platform,
                message.session_key,
                error,
            )

    @contextlib.asynccontextmanager
    async def _typing(self, signal: TypingSignal | None) -> AsyncIterator[None]:
        if signal is None:
            yield
            return
        task = asyncio.create_task(self._send_typing(signal))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send_typing(self, signal: TypingSignal) -> None:
        await asyncio.sleep(self.typing_after_s)
        while True:
            try:
                await signal()
            except Exception as error:  # a lost typing notice must not fail the run
                logger.warning("platform {}: typing signal failed: {}", self.platform, error)
            if self.typing_every_s is None:
                return
            await asyncio.sleep(self.typing_every_s)
