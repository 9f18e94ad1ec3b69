"""Line-wise delivery: a streamed reply cut into whole lines as they complete.

For platforms that send text a line at a time (IRC, SMS, a log channel): each line goes out
as soon as it is complete, not when the run ends. See ``docs/streaming.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from hermes_core.events import RunEvent, RunFinished, TextDelta
from hermes_core.types import Reply

#: Cuts text (one or more lines) into the messages a platform sends. ``first`` is true while
#: no message of the reply has been produced yet, for an address such as ``"alice: "``. It
#: must cut greedily from the start, so that the messages of a text, but its last, stay the
#: same however the text goes on (IRC's byte-budget cutter does).
Split = Callable[[str, bool], list[str]]


def non_blank_lines(text: str, first: bool) -> list[str]:
    """The default :data:`Split`: each non-blank line, trailing spaces removed."""
    return [line.rstrip() for line in text.splitlines() if line.strip()]


class ReplyLines:
    """The messages of a streamed reply, each yielded once it is complete.

    A line is complete at its line break; a line too long for one message is cut by
    ``split``, and each of its messages but the last goes out as soon as more text follows.
    What the run did not stream (a command's answer, a failure's explanation) arrives as
    more text, so it follows in order. When a plugin rewrote the reply after text was
    streamed, the rewritten reply (``RunFinished.reply.text``, the one that counts) is sent
    whole after the lines already sent, and the unsent rest of the stream is dropped.
    After iteration, :attr:`reply` is the run's reply and :attr:`sent` the messages yielded.
    """

    def __init__(self, events: AsyncIterator[RunEvent], split: Split = non_blank_lines) -> None:
        self.events = events
        self.split = split
        self.reply: Reply | None = None
        self.sent = 0
        self._pending = ""  # the text after the last line break
        self._pending_sent = 0  # messages of _pending already yielded
        self._streamed: list[str] = []

    async def __aiter__(self) -> AsyncIterator[str]:
        async for event in self.events:
            if isinstance(event, TextDelta):
                self._streamed.append(event.text)
                messages = self._feed(event.text)
            elif isinstance(event, RunFinished):
                self.reply = event.reply
                messages = self._finish(event.reply.text)
            else:
                continue
            for message in messages:
                self.sent += 1
                yield message
            if self.reply is not None:
                return

    def _feed(self, text: str) -> list[str]:
        self._pending += text
        first = self.sent - self._pending_sent == 0  # as when the pending line began
        parts = self._pending.splitlines(keepends=True)
        # The last part is an unfinished line unless it ends with a line break.
        tail = parts.pop() if parts and parts[-1].splitlines() == [parts[-1]] else ""
        out: list[str] = []
        if parts:  # whole lines: every message of theirs is final
            out = self.split("".join(parts), first)[self._pending_sent :]
            self._pending, self._pending_sent = tail, 0
            first = self.sent + len(out) == 0
        if tail:  # an unfinished line: all its messages but the last are final
            ready = self.split(tail, first)[:-1]
            out += ready[self._pending_sent :]
            self._pending_sent = max(self._pending_sent, len(ready))
        return out

    def _finish(self, final: str) -> list[str]:
        if final == "".join(self._streamed):
            first = self.sent - self._pending_sent == 0
            return self.split(self._pending, first)[self._pending_sent :]
        return self.split(final, self.sent == 0)
