"""Built-in ``console`` platform: a terminal chat on stdin/stdout.

Each line is one message from user ``local`` in session ``console:local``; replies go to stdout
as they are produced (the run's text deltas, control characters made visible, see
:mod:`hermes_core.terminal`) and logs to stderr. Without a terminal it prints no prompt, and at
end of input it finishes the runs in flight and closes.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Mapping
from typing import IO, Any

from hermes_core import hookimpl
from hermes_core.events import TextDelta
from hermes_core.gateway import Gateway
from hermes_core.mcp.asking import Question
from hermes_core.platforms import RegisterPlatform
from hermes_core.settings.schema import RegisterSetting
from hermes_core.terminal import visible
from hermes_core.types import Message

NAME = "console"
SESSION_KEY = "console:local"
USER_ID = "local"
PROMPT = "> "


class ConsolePlatform:
    """Reads lines on a daemon thread (a blocked ``readline`` must never hold up exit)."""

    def __init__(
        self,
        gateway: Gateway,
        settings: Mapping[str, Any],
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
    ) -> None:
        self.gateway = gateway
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = bool(settings.get("prompt", self.stdin.isatty()))
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def read() -> None:
            for line in self.stdin:
                loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\r\n"))
            loop.call_soon_threadsafe(self._lines.put_nowait, None)

        threading.Thread(target=read, name="hermes-core console reader", daemon=True).start()
        self.gateway.askers.register(NAME, self)
        self._task = asyncio.create_task(self._serve(), name="hermes-core console")

    async def _serve(self) -> None:
        try:
            while True:
                self._prompt()
                line = await self._lines.get()
                if line is None or self._stopping:
                    return
                if not line.strip():
                    continue
                message = Message(
                    text=line, platform=NAME, session_key=SESSION_KEY, user_id=USER_ID
                )
                async for event in self.gateway.stream(message):
                    if isinstance(event, TextDelta):  # model text: no raw escapes
                        self.stdout.write(visible(event.text))
                        self.stdout.flush()
                self.stdout.write("\n")
                self.stdout.flush()
        finally:
            self._closed.set()

    def _prompt(self) -> None:
        if self.interactive:
            self.stdout.write(PROMPT)
            self.stdout.flush()

    async def ask(self, session_key: str, question: Question) -> str | None:
        """An MCP server's question (:class:`hermes_core.mcp.asking.Asker`): printed, and the
        next line read is the answer. Lines are read only between runs otherwise, so the
        line cannot be taken for a message.

        When the wait for the answer ends first (the caller cancels it after
        ``question.timeout_s``), one line says so: an answer typed after it is read as the
        next message, as that line tells, never dropped and never taken for an answer
        nobody waits for.
        """
        self.stdout.write(f"\n{visible(question.text)} ")
        self.stdout.flush()
        try:
            line = await self._lines.get()
        except asyncio.CancelledError:
            self.stdout.write(
                f"\n(the question expired: MCP server {question.server!r} stopped waiting for "
                "an answer; your next line is a new message)\n"
            )
            self.stdout.flush()
            raise
        if line is None:  # end of input: no answer, and the serving loop still sees the end
            self._lines.put_nowait(None)
        return line

    async def stop(self) -> None:
        self.gateway.askers.unregister(NAME)
        # Lines are served one at a time: stopping lets the current one finish and reply,
        # and drops only lines not yet started.
        self._stopping = True
        self._lines.put_nowait(None)
        if self._task is not None:
            await self._task
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()


@hookimpl(trylast=True)
def register_platforms(register: RegisterPlatform) -> None:
    register(NAME, ConsolePlatform)


@hookimpl(trylast=True)
def register_settings(register: RegisterSetting) -> None:
    register(
        f"platforms.{NAME}.enabled",
        bool,
        description="true: start the console beside other platforms; false: never.",
        expected="true or false",
    )
    register(f"platforms.{NAME}.prompt", bool, description="Print a prompt before each line.")
