"""``hermes_core.lines.ReplyLines``: a streamed reply cut into whole lines as they complete.

Each test feeds a run's events one at a time and notes, in one log, each event handed over
and each message yielded, so the log shows which delta let which line out.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

from hermes_core.events import RunEvent, RunFinished, TextDelta, ToolCallStarted
from hermes_core.lines import ReplyLines, Split
from hermes_core.types import Reply


async def lines_log(
    deltas: list[str], final: str | None = None, split: Split | None = None
) -> tuple[list[str], ReplyLines]:
    """Stream ``deltas`` (then a RunFinished with ``final``, default their sum) through
    ReplyLines; the log holds ``+delta`` for each delta handed over and each line yielded."""
    log: list[str] = []

    async def events() -> AsyncIterator[RunEvent]:
        for text in deltas:
            log.append(f"+{text}")
            yield TextDelta(text)
        yield ToolCallStarted("call_1", "noise", "{}")  # other events pass unnoticed
        yield RunFinished(Reply("".join(deltas) if final is None else final))

    lines = ReplyLines(events()) if split is None else ReplyLines(events(), split)
    async for line in lines:
        log.append(line)
    return log, lines


def wrap(width: int, prefix: str = "") -> Split:
    """A greedy word wrap to ``width`` characters, ``prefix`` on the reply's first message."""

    def split(text: str, first: bool) -> list[str]:
        out: list[str] = []
        for line in text.splitlines():
            start = prefix if first and not out else ""
            out += textwrap.wrap(start + line, width) if line.strip() else []
        return out

    return split


async def test_a_line_is_yielded_at_its_line_break_not_at_the_end() -> None:
    log, lines = await lines_log(["one\ntw", "o\n", "\nthr", "ee"])
    assert log == ["+one\ntw", "one", "+o\n", "two", "+\nthr", "+ee", "three"]
    assert lines.sent == 3
    assert lines.reply is not None and lines.reply.text == "one\ntwo\n\nthree"


async def test_a_long_line_goes_out_a_message_at_a_time_as_it_grows() -> None:
    log, _ = await lines_log(["alpha beta ", "gamma delta ", "epsilon"], split=wrap(12))
    # "alpha beta" is final only once "gamma" shows it cannot take another word.
    assert log == [
        "+alpha beta ",
        "+gamma delta ",
        "alpha beta",
        "+epsilon",
        "gamma delta",
        "epsilon",
    ]


async def test_the_prefix_goes_on_the_first_message_only() -> None:
    log, _ = await lines_log(["\n", "hi there\nbye"], split=wrap(40, prefix="al: "))
    assert [entry for entry in log if not entry.startswith("+")] == ["al: hi there", "bye"]


async def test_a_rewritten_reply_follows_the_lines_already_sent_whole() -> None:
    log, lines = await lines_log(["draft 1\ndraft"], final="final 1\nfinal 2")
    assert log == ["+draft 1\ndraft", "draft 1", "final 1", "final 2"]
    assert lines.sent == 3


async def test_an_empty_reply_yields_nothing_and_keeps_the_reply() -> None:
    log, lines = await lines_log([], final="")
    assert log == []
    assert lines.sent == 0
    assert lines.reply == Reply("")
