"""A server's output that is not JSON-RPC: counted, and summed up in one warning a minute.

A server that logs to stdout writes a line the client cannot parse for every line it logs;
the SDK logs a traceback for each. Here each server's such lines are counted and reported in
one warning per :data:`REPORT_INTERVAL_S`, with the count and the first line, and once more
when the server is stopped, for what was counted since.
"""

from __future__ import annotations

import asyncio
import json

from loguru import logger

#: At most one warning per server in this many seconds.
REPORT_INTERVAL_S = 60.0
#: How much of an offending line a message quotes.
SAMPLE_CHARS = 80


def sample(text: str) -> str:
    """The start of an offending line, quoted, for one line of log or status."""
    return repr(text[:SAMPLE_CHARS])


def rejected_input(error: Exception) -> str:
    """What the server sent, from the SDK's parse error of it (or the error itself)."""
    from pydantic import ValidationError  # comes with the mcp SDK, imported when it is

    if not isinstance(error, ValidationError) or not error.errors():
        return str(error)
    value = error.errors()[0]["input"]  # the rejected text, or the JSON it held
    return value if isinstance(value, str) else json.dumps(value, default=str)


class BadOutput:
    """Counts one server's output lines that are not JSON-RPC; warns once per interval.

    :ivar total: every such line since the server was configured.
    """

    def __init__(self, server: str, interval_s: float = REPORT_INTERVAL_S) -> None:
        self.server = server
        self.interval_s = interval_s
        self.total = 0
        self._count = 0
        self._first = ""
        self._report: asyncio.TimerHandle | None = None

    def add(self, text: str) -> None:
        """Count one line (called on the event loop)."""
        self.total += 1
        if self._count == 0:
            self._first = text
            self._report = asyncio.get_running_loop().call_later(self.interval_s, self.flush)
        self._count += 1

    def flush(self) -> None:
        """Log what was counted since the last warning, if anything; called by the timer
        and when the server stops."""
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if self._count:
            logger.warning(
                "mcp server {!r}: ignored {} line(s) of its output that are not JSON-RPC "
                "(first: {}); a stdio server's logs belong on stderr (reported at most once "
                "every {:g}s)",
                self.server,
                self._count,
                sample(self._first),
                self.interval_s,
            )
        self._count = 0
