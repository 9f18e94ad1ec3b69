"""The console platform on a pipe, for tests whose input must stay open while they watch it."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TextIO

from hermes_core.gateway import Gateway
from hermes_core.plugins.console import ConsolePlatform


@dataclass
class PipedConsole:
    """A started console, the writing end of its stdin, and what it wrote to stdout."""

    console: ConsolePlatform
    writer: TextIO
    out: io.StringIO

    def type(self, text: str) -> None:
        """Send ``text`` (lines ending in ``\\n``) to the console at once."""
        self.writer.write(text)
        self.writer.flush()


@contextlib.asynccontextmanager
async def piped_console(gateway: Gateway) -> AsyncIterator[PipedConsole]:
    """A console on ``gateway`` reading a pipe: its input ends only when the test closes
    ``writer``, so only that or ``console.stop()`` ends it. Stopped on the way out."""
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    with open(read_fd) as stdin, open(write_fd, "w") as writer:
        console = ConsolePlatform(gateway, {}, stdin=stdin, stdout=out)
        await console.start()
        try:
            yield PipedConsole(console, writer, out)
        finally:
            await console.stop()
