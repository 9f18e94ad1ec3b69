"""Process groups of stdio MCP servers: who is in one, and ending every member.

Each stdio server starts in a new session, so its pid is also its process group id and every
helper it starts (a launcher's ``npx`` child, a shell's background job) shares that group
unless it makes a session of its own. Killing the group reaches them all, even after the
server itself has exited. Membership is read from ``/proc`` (Linux); elsewhere only
``killpg(pgid, 0)`` is available, which also counts zombies.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import anyio

PROC = Path("/proc")
#: Polling between a signal and the check that the group is gone: short at first, since a
#: group usually dies within milliseconds, then sparser for one that takes its time.
FIRST_POLL_S = 0.005
MAX_POLL_S = 0.1
#: How long SIGKILL may take to empty a group (only a process stuck in the kernel needs it).
KILL_WAIT_S = 2.0


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` that identify a process and its group."""

    pid: int
    state: str
    pgid: int
    sid: int
    start_time: int  #: clock ticks after boot: with the pid, names one process for ever

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def read_stat(pid: int) -> ProcStat | None:
    """The process ``pid``'s identity, or None when there is no such process (or no /proc)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = text.rsplit(")", 1)[1].split()
    return ProcStat(pid, fields[0], int(fields[2]), int(fields[3]), int(fields[19]))


def start_time(pid: int) -> int | None:
    stat = read_stat(pid)
    return stat.start_time if stat is not None else None


def boot_id() -> str:
    """This boot's id: pids and start times recorded before a reboot name nothing now."""
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def members(pgid: int) -> list[ProcStat]:
    """Every live (not zombie) process in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # the usual answer, without reading /proc
    except PermissionError:
        pass  # someone else's members, or zombies: /proc tells
    if not PROC.is_dir():
        return [ProcStat(pgid, "?", pgid, pgid, 0)]  # the group exists; no more is known
    stats = (read_stat(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [stat for stat in stats if stat is not None and stat.pgid == pgid and not stat.zombie]


async def _gone_within(pgid: int, timeout_s: float) -> bool:
    poll = FIRST_POLL_S
    with anyio.move_on_after(timeout_s):
        while members(pgid):
            await anyio.sleep(poll)
            poll = min(poll * 2, MAX_POLL_S)
        return True
    return not members(pgid)


async def terminate_group(pgid: int, grace_s: float) -> bool:
    """SIGTERM every member of group ``pgid``, SIGKILL what is left after ``grace_s``.

    Returns whether the group is gone. A group without live members is not signalled.
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        if not members(pgid):
            return True
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # a member we may not signal: wait, then escalate, then report
        if await _gone_within(pgid, wait_s):
            return True
    return False
