"""The ``irc`` adapter: a small asyncio IRC client in front of a hermes-core gateway.

It connects and registers in :meth:`IrcPlatform.start` (so an unreachable server is reported
at start-up), joins ``platforms.irc.channels``, and answers

- in a channel, messages addressed to it (``hermes: what time is it?``), replying
  ``alice: ...`` in that channel, in session ``irc:<channel>:<nick>``;
- private messages, replying privately, in session ``irc:<nick>``.

Replies stream: each line goes out as soon as it is complete (a line break, or a full
512-byte IRC line), with flood control; one reply's lines to a channel are not interleaved
with another's. A lost connection is re-established with exponential backoff.
:class:`~hermes_core.platforms.Intake` does the rest: the allow list (by nick), runs that
outlive the connection's reader, replies of one session in order, the optional "working"
notice, and finishing the runs in flight on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core.events import RunEvent
from hermes_core.lines import ReplyLines
from hermes_core.platforms import Intake, PlatformSettings
from hermes_core.types import Message
from hermes_irc.protocol import (
    Line,
    addressed_text,
    command,
    is_channel,
    parse,
    payload_budget,
    split_text,
)

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway

NAME = "irc"
#: Lines sent at once before flood control spaces them ``line_delay_s`` apart.
BURST_LINES = 4
#: Seconds of silence from the server before we PING it; as long again without an answer
#: and the connection is considered dead.
IDLE_PING_S = 120.0
#: Seconds to wait for the server to close the connection after our QUIT.
QUIT_WAIT_S = 5.0
#: Numeric replies that refuse a JOIN (no such channel, full, invite-only, banned, bad key...).
JOIN_ERRORS = frozenset({"403", "405", "471", "473", "474", "475", "476", "477"})
#: Attempts at a free nick (``hermes``, ``hermes_``, ``hermes__``...) when ours is taken.
NICK_ATTEMPTS = 5

_NICK = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$")


@dataclass(frozen=True)
class IrcSettings:
    """``platforms.irc``, validated (a ConfigError names the key)."""

    server: str
    port: int
    tls: bool
    nick: str
    password: str
    realname: str
    channels: tuple[str, ...]
    max_reply_lines: int
    line_delay_s: float
    working_notice: str
    working_after_s: float
    connect_timeout_s: float
    reconnect_max_s: float

    @classmethod
    def load(cls, settings: PlatformSettings) -> IrcSettings:
        server = settings.string("server", "")
        if not server:
            raise settings.error("server", "required: the IRC server's host name")
        nick = settings.string("nick", "hermes")
        if not _NICK.match(nick):
            raise settings.error("nick", f"not a valid IRC nick: {nick!r}")
        channels = settings.strings("channels")
        for channel in channels:
            if not is_channel(channel) or "," in channel:
                raise settings.error("channels", f"not a channel name: {channel!r}")
        return cls(
            server=server,
            port=settings.integer("port", 6667, minimum=1, maximum=65535),
            tls=settings.boolean("tls", False),
            nick=nick,
            password=settings.string("password", ""),
            realname=settings.string("realname", "hermes-core agent"),
            channels=tuple(channels),
            max_reply_lines=settings.integer("max_reply_lines", 10, minimum=1),
            line_delay_s=settings.number("line_delay_s", 1.0, minimum=0),
            working_notice=settings.string("working_notice", ""),
            working_after_s=settings.number("working_after_s", 5.0, minimum=0),
            connect_timeout_s=settings.number("connect_timeout_s", 30.0, minimum=1),
            reconnect_max_s=settings.number("reconnect_max_s", 300.0, minimum=1),
        )


class IrcPlatform:
    """The adapter. ``nick`` is the nick the server gave us (ours, or with ``_`` added)."""

    def __init__(self, gateway: Gateway, settings: Mapping[str, Any]) -> None:
        table = PlatformSettings(NAME, settings)
        self.settings = IrcSettings.load(table)
        # The "working" notice goes out once, only for a run that takes a while.
        self.intake = Intake(
            gateway, table, typing_after_s=self.settings.working_after_s, typing_every_s=None
        )
        self.nick = self.settings.nick
        self.userhost: str | None = None  # ours, as others see it: sizes our lines exactly
        self.channels: set[str] = set()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        # Per target: held by the reply streaming there, so replies' lines do not interleave.
        self._floors: dict[str, asyncio.Lock] = {}
        self._floor_users: Counter[str] = Counter()
        self._sent_at: deque[float] = deque(maxlen=BURST_LINES)
        self._pending_joins: set[str] = set()
        self._joins_settled = asyncio.Event()
        self._stopping = False
        self._closed = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, register and join; raises when the server cannot be reached or refuses."""
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="hermes-irc connection")
        try:
            await asyncio.wait_for(self._joins_settled.wait(), self.settings.connect_timeout_s)
        except TimeoutError:
            logger.warning("irc: no answer to JOIN {}", ", ".join(sorted(self._pending_joins)))
        logger.info(
            "irc: connected to {}:{} as {}; in {}",
            self.settings.server,
            self.settings.port,
            self.nick,
            ", ".join(sorted(self.channels)) or "no channel",
        )

    async def stop(self) -> None:
        """Finish the runs in flight and send their replies, then QUIT and close."""
        if self._stopping:
            await self._closed.wait()
            return
        self._stopping = True
        await self.intake.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._send_lines("QUIT", None, ["hermes-core is shutting down"], throttle=False)
        if self._task is not None:
            # The server answers QUIT by closing the connection, which ends _run.
            await asyncio.wait({self._task}, timeout=QUIT_WAIT_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_connection()
        self._closed.set()
        logger.info("irc: disconnected")

    async def wait_closed(self) -> None:
        """Return once stopped (an IRC bot has no natural end)."""
        await self._closed.wait()

    # --- connection ----------------------------------------------------------------------

    async def _connect(self) -> None:
        settings = self.settings
        context = ssl.create_default_context() if settings.tls else None
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(settings.server, settings.port, ssl=context),
            settings.connect_timeout_s,
        )
        try:
            await asyncio.wait_for(self._register(), settings.connect_timeout_s)
        except BaseException:
            await self._close_connection()
            raise
        self._pending_joins = {channel.split()[0].lower() for channel in settings.channels}
        if not self._pending_joins:
            self._joins_settled.set()
        for channel in settings.channels:
            self._write(command("JOIN", *channel.split(maxsplit=1)))

    async def _register(self) -> None:
        """PASS/NICK/USER, then wait for the welcome (001), taking another nick if needed."""
        settings = self.settings
        if settings.password:
            self._write(command("PASS", settings.password))
        nick = settings.nick
        self._write(command("NICK", nick))
        self._write(command("USER", nick, "0", "*", settings.realname))
        for _ in range(NICK_ATTEMPTS + 50):  # bounded: a chatty server cannot keep us here
            line = await self._read_line()
            if line is None:
                raise ConnectionError("the IRC server closed the connection during login")
            if line.command == "PING":
                self._write(command("PONG", line.param(0)))
            elif line.command == "001":
                self.nick = line.param(0) or nick
                self._learn_userhost(line.params[-1].split()[-1] if line.params else "")
                return
            elif line.command == "433" and len(nick) - len(settings.nick) < NICK_ATTEMPTS:
                nick += "_"
                self._write(command("NICK", nick))
            elif line.command in {"432", "433", "464", "465", "ERROR"}:
                raise ConnectionError(f"the IRC server refused us: {' '.join(line.params)}")
        raise ConnectionError("no welcome from the IRC server")

    async def _run(self) -> None:
        """Serve the connection; when it drops, reconnect with backoff until stopped."""
        delay = 1.0
        while True:
            await self._serve_connection()
            await self._close_connection()
            while not self._stopping:
                logger.warning("irc: connection lost; reconnecting in {:.0f}s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
                try:
                    await self._connect()
                    delay = 1.0
                    break
                except (OSError, ConnectionError, TimeoutError) as error:
                    logger.warning("irc: reconnect failed: {}", error)
            if self._stopping:
                return

    async def _serve_connection(self) -> None:
        pinged = False
        while True:
            try:
                line = await asyncio.wait_for(self._read_line(), IDLE_PING_S)
            except TimeoutError:
                if pinged:
                    logger.warning("irc: the server stopped answering")
                    return
                self._write(command("PING", "hermes-irc"))
                pinged = True
                continue
            except (OSError, ConnectionError, ValueError) as error:
                if not self._stopping:
                    logger.warning("irc: read failed: {}", error)
                return
            if line is None:
                return
            pinged = False
            try:
                self._dispatch(line)
            except Exception as error:  # one odd line must not take the connection down
                logger.opt(exception=error).error("irc: could not handle {!r}", line)

    async def _read_line(self) -> Line | None:
        if self._reader is None:
            return None
        data = await self._reader.readline()
        return parse(data.decode("utf-8", errors="replace")) if data else None

    async def _close_connection(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self.channels.clear()
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    # --- what the server says ------------------------------------------------------------

    def _dispatch(self, line: Line) -> None:
        own = line.nick.lower() == self.nick.lower()
        if line.command == "PING":
            self._write(command("PONG", line.param(0)))
        elif line.command == "PRIVMSG":
            self._on_privmsg(line)
        elif line.command == "JOIN" and own:
            self._learn_userhost(line.prefix)
            self.channels.add(line.param(0).lower())
            self._settle_join(line.param(0))
        elif line.command in JOIN_ERRORS:
            logger.error("irc: cannot join {}: {}", line.param(1), line.params[-1])
            self._settle_join(line.param(1))
        elif line.command == "KICK" and line.param(1).lower() == self.nick.lower():
            logger.warning("irc: kicked from {} by {}; rejoining", line.param(0), line.nick)
            self.channels.discard(line.param(0).lower())
            self._write(command("JOIN", line.param(0)))
        elif line.command == "NICK" and own:
            self.nick = line.param(0)
        elif line.command == "ERROR" and not self._stopping:  # when stopping: QUIT's answer
            logger.warning("irc: server error: {}", line.param(0))

    def _learn_userhost(self, mask: str) -> None:
        if "!" in mask:
            self.userhost = mask.split("!", 1)[1]

    def _settle_join(self, channel: str) -> None:
        self._pending_joins.discard(channel.lower())
        if not self._pending_joins:
            self._joins_settled.set()

    def _on_privmsg(self, line: Line) -> None:
        sender, target, text = line.nick, line.param(0), line.param(1)
        if not sender or sender.lower() == self.nick.lower() or text.startswith("\x01"):
            return  # our own echo, or CTCP (ACTION, VERSION...): not a question for the agent
        if is_channel(target):
            body = addressed_text(text, self.nick)
            reply_to, prefix = target, f"{sender}: "
            session = f"{NAME}:{target.lower()}:{sender.lower()}"
        else:
            body = text.strip()
            reply_to, prefix = sender, ""
            session = f"{NAME}:{sender.lower()}"
        if not body:
            return
        message = Message(text=body, platform=NAME, session_key=session, user_id=sender)
        # Both callbacks are bound to where the message came from: a reply cannot go elsewhere.
        deliver = functools.partial(self._reply, reply_to, prefix)
        working = functools.partial(self._working, reply_to, prefix)
        self.intake.submit_stream(
            message, deliver, working if self.settings.working_notice else None
        )

    # --- what we say ---------------------------------------------------------------------

    async def _reply(self, target: str, prefix: str, events: AsyncIterator[RunEvent]) -> None:
        """Send each line of the reply as it completes; past ``max_reply_lines``, one notice
        says how many were cut (so the last allowed line waits until we know)."""
        budget = payload_budget(self.nick, self.userhost, target)
        lines = ReplyLines(
            events,
            lambda text, first: split_text(text, budget, first_prefix=prefix if first else ""),
        )
        limit = self.settings.max_reply_lines
        held: list[str] = []
        async with contextlib.AsyncExitStack() as floor:
            async for line in lines:
                if lines.sent == 1:
                    await floor.enter_async_context(self._floor(target))
                if lines.sent < limit:
                    await self._send_lines("PRIVMSG", target, [line])
                else:
                    held.append(line)
            if len(held) > 1:
                held = [f"[{len(held)} more line(s) cut: ask for a shorter answer]"]
            if lines.sent == 0:
                held = [prefix + "(no answer)"]
            await self._send_lines("PRIVMSG", target, held)

    @contextlib.asynccontextmanager
    async def _floor(self, target: str) -> AsyncIterator[None]:
        """Hold ``target`` for one reply; forgotten once nobody holds or waits for it."""
        key = target.lower()
        self._floor_users[key] += 1
        try:
            async with self._floors.setdefault(key, asyncio.Lock()):
                yield
        finally:
            self._floor_users[key] -= 1
            if not self._floor_users[key]:
                del self._floor_users[key], self._floors[key]

    async def _working(self, target: str, prefix: str) -> None:
        await self._send_lines("NOTICE", target, [prefix + self.settings.working_notice])

    async def _send_lines(
        self, kind: str, target: str | None, texts: Iterable[str], *, throttle: bool = True
    ) -> None:
        """Send one command per text, in order, spaced out by flood control."""
        async with self._send_lock:  # FIFO: replies go out whole and in the order queued
            for text in texts:
                if throttle:
                    await self._throttle()
                params = (target, text) if target is not None else (text,)
                self._write(command(kind, *params))
            if self._writer is not None:
                await self._writer.drain()

    async def _throttle(self) -> None:
        """At most BURST_LINES lines in any ``BURST_LINES * line_delay_s`` seconds."""
        loop = asyncio.get_running_loop()
        window = BURST_LINES * self.settings.line_delay_s
        if len(self._sent_at) == BURST_LINES:
            wait = self._sent_at[0] + window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        self._sent_at.append(loop.time())

    def _write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ConnectionError("not connected to the IRC server")
        self._writer.write(data)
