"""The :class:`Intake`: how a platform adapter hands its messages to the gateway.

See :class:`Intake` for what it guarantees, and ``docs/platforms.md`` for an adapter using it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core.errors import HermesError
from hermes_core.events import RunEvent, RunFinished, TextDelta, until_finished
from hermes_core.platform_settings import DEFAULT_STOP_GRACE_S
from hermes_core.types import Reply

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.platform_settings import PlatformSettings
    from hermes_core.types import Message

#: Seconds a stopping platform waits for runs in flight (``platforms.<name>.stop_grace_s``).

#: What a user outside ``platforms.<name>.allow_users`` reads, on every platform; no run
#: happens (the http platform answers it with a 403).
REFUSAL = (
    "Sorry, I can only answer people on this assistant's allow list. "
    "Please ask its operator for access."
)


@dataclass(frozen=True)
class Refusal(Reply):
    """The reply to a user outside ``allow_users``: :data:`REFUSAL`, and no run happened."""

    text: str = REFUSAL


#: A typing/"working" signal: awaited while a run takes a while (see :class:`Intake`).
TypingSignal = Callable[[], Awaitable[None]]
#: Sends one reply back to where its message came from.
Deliver = Callable[[Reply], Awaitable[None]]
#: Sends one reply back as it streams: reads the run's events, the last a RunFinished
#: (:class:`hermes_core.lines.ReplyLines` turns them into whole lines).
DeliverStream = Callable[[AsyncIterator[RunEvent]], Awaitable[None]]


class IntakeClosed(HermesError):
    """The platform is stopping and takes no new messages (HTTP answers 503)."""


class Intake:
    """Hands a platform's inbound messages to the gateway.

    - **Allow list**: ``platforms.<name>.allow_users`` (empty: everyone). A message from anyone
      else gets a :class:`Refusal` (:data:`REFUSAL`) and never reaches a run; the check is
      made once, in :meth:`_admit`, for :meth:`handle` and :meth:`submit` alike.
    - **Runs outlive their requester**: each run is its own task. If the adapter's task awaiting
      :meth:`handle` is cancelled (an HTTP client hung up), the run still finishes and its
      answer joins the session's history, so the history never holds a half-done turn.
    - **Typing signal**: pass ``typing`` and it is awaited once a run has taken
      ``typing_after_s``, then every ``typing_every_s`` (``None``: once) until the reply is ready.
    - **Push platforms** (IRC, chat bots) call :meth:`submit` with a ``deliver`` callback bound
      to the chat the message came from: replies of one session are delivered in arrival order,
      and a reply cannot go to another chat. :meth:`submit_stream` is the same for a
      ``deliver`` that shows the reply while it grows.
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
        """Run ``message`` through the gateway and return the reply (a :class:`Refusal` for
        users not on the allow list). Raises :class:`IntakeClosed` once the platform is
        stopping."""
        if not self._accepting:
            raise IntakeClosed(f"platform {self.platform} is shutting down")
        run = self._admit(message)
        return run if isinstance(run, Refusal) else await self._await_run(run, typing)

    async def stream(self, message: Message) -> AsyncIterator[RunEvent]:
        """Serve ``message`` as :meth:`handle` does, yielding the run's events as they happen
        (:meth:`hermes_core.gateway.Gateway.stream`); a refused message streams only its
        :class:`Refusal`. Raises :class:`IntakeClosed` once the platform is stopping."""
        if not self._accepting:
            raise IntakeClosed(f"platform {self.platform} is shutting down")
        if (refusal := self._refusal(message)) is not None:
            yield RunFinished(refusal)
            return
        async for event in self.gateway.stream(message):
            yield event

    def submit(
        self, message: Message, deliver: Deliver, typing: TypingSignal | None = None
    ) -> bool:
        """Run ``message`` in the background and ``await deliver(reply)`` when it is done.

        Returns False (and drops the message, with a log line) once the platform is stopping.
        """
        if not self._admits_more(message):
            return False
        # The run task is created now, not inside the delivery task, so runs of one session
        # reach the gateway's session lock in the order the messages arrived.
        run = self._admit(message)
        self._queue_delivery(
            message, lambda previous: self._deliver(message, run, deliver, typing, previous)
        )
        return True

    def submit_stream(
        self, message: Message, deliver: DeliverStream, typing: TypingSignal | None = None
    ) -> bool:
        """Run ``message`` in the background and ``await deliver(events)`` with its run's
        events as they happen, once the session's earlier replies are delivered. ``typing``
        runs until the first text (or the end). Otherwise as :meth:`submit`."""
        if not self._admits_more(message):
            return False
        queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        if (refusal := self._refusal(message)) is not None:
            queue.put_nowait(RunFinished(refusal))
        else:  # started now, for the arrival order, as in submit
            self._track(asyncio.create_task(self._pump(message, queue.put_nowait)))
        self._queue_delivery(
            message,
            lambda previous: self._deliver_stream(message, queue, deliver, typing, previous),
        )
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

    def _admits_more(self, message: Message) -> bool:
        if not self._accepting:
            logger.warning(
                "platform {} is stopping; dropped a message for session {}",
                self.platform,
                message.session_key,
            )
        return self._accepting

    def _queue_delivery(
        self,
        message: Message,
        delivery: Callable[[asyncio.Task[None] | None], Coroutine[Any, Any, None]],
    ) -> None:
        """Start ``delivery(previous)``, ``previous`` being the session's delivery before it."""
        key = message.session_key
        task = self._track(asyncio.create_task(delivery(self._last_delivery.get(key))))
        self._last_delivery[key] = task

        def forget(task: asyncio.Task[None]) -> None:
            if self._last_delivery.get(key) is task:
                del self._last_delivery[key]

        task.add_done_callback(forget)

    async def _pump(self, message: Message, put: Callable[[RunEvent], None]) -> None:
        async for event in self.gateway.stream(message):
            put(event)

    def _admit(self, message: Message) -> asyncio.Task[Reply] | Refusal:
        """The message's run, started, or its refusal."""
        return self._refusal(message) or self._spawn_run(message)

    def _refusal(self, message: Message) -> Refusal | None:
        """The one allow-list check: the refusal of a user not on the list, else None."""
        if self.allows(message.user_id):
            return None
        logger.info(
            "platform {}: user {!r} is not in platforms.{}.allow_users; refused",
            self.platform,
            message.user_id,
            self.platform,
        )
        return Refusal()

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
        # shield: cancelling the requester must not cancel the run itself.
        if typing is None:  # the http platform's case: no context manager per request
            return await asyncio.shield(run)
        async with self._typing(typing):
            return await asyncio.shield(run)

    async def _deliver(
        self,
        message: Message,
        run: asyncio.Task[Reply] | Refusal,
        deliver: Deliver,
        typing: TypingSignal | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        reply = run if isinstance(run, Refusal) else await self._await_run(run, typing)
        if previous is not None:
            await asyncio.wait({previous})  # the earlier reply of this session goes out first
        await self._guarded(message, deliver(reply))

    async def _deliver_stream(
        self,
        message: Message,
        queue: asyncio.Queue[RunEvent],
        deliver: DeliverStream,
        typing: TypingSignal | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})  # the earlier reply of this session goes out first
        await self._guarded(message, deliver(self._typing_until_text(queue, typing)))

    async def _typing_until_text(
        self, queue: asyncio.Queue[RunEvent], signal: TypingSignal | None
    ) -> AsyncIterator[RunEvent]:
        """The run's events; ``signal`` is on until the first text or the end arrives."""
        events = until_finished(queue)
        head: list[RunEvent] = []
        async with self._typing(signal):
            async for event in events:
                head.append(event)
                if isinstance(event, TextDelta | RunFinished):
                    break
        for event in head:
            yield event
        async for event in events:
            yield event

    async def _guarded(self, message: Message, delivery: Awaitable[None]) -> None:
        """Await ``delivery``; a failure is logged, never raised into the intake."""
        try:
            await delivery
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
