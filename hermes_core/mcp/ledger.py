"""A record, on disk, of the MCP server process groups a gateway has running.

A gateway stops its servers' groups on every way out but one: ``kill -9``. So each pool writes
the groups it starts to ``<state dir>/mcp-processes/<pid>-<token>.json``, and the next gateway
on the same state directory kills the groups of every record whose owner is dead. Nothing is
signalled unless it is provably what was recorded: the owner must be dead (its pid gone or
now a process that started at another time, or the machine rebooted since), and a group's
leader, if still there, must have the recorded start time. A leaderless group cannot have been
recycled: the kernel never hands out a pid that is still some group's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from loguru import logger

from hermes_core.mcp.groups import boot_id, members, read_stat, start_time, terminate_group

#: The directory, inside the state directory, holding one record per running pool.
LEDGER_DIR = "mcp-processes"
#: SIGTERM to SIGKILL for a dead gateway's leftovers (nobody waits for them to finish work).
LEFTOVER_GRACE_S = 2.0


class ProcessLedger:
    """The process groups one pool has running, mirrored to a file once :meth:`open`.

    Until opened (``mcp test``, ``doctor``: short-lived commands) it records in memory only.
    Writing is best effort: a full disk loses the record, never a server.
    """

    def __init__(self) -> None:
        self.groups: dict[int, dict[str, Any]] = {}
        self.path: Path | None = None
        self._owner = {"pid": os.getpid(), "start_time": start_time(os.getpid()), "boot": boot_id()}
        self._write_failed = False

    async def open(self, state_dir: Path) -> None:
        """Record to ``state_dir`` from now on, after killing what dead owners left there."""
        directory = state_dir / LEDGER_DIR
        await reap_leftovers(directory)
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self._write()

    def record(self, pgid: int, server: str) -> None:
        """Remember group ``pgid`` (its leader just started) of MCP server ``server``."""
        self.groups[pgid] = {"pgid": pgid, "start_time": start_time(pgid), "server": server}
        self._write()

    def forget(self, pgid: int) -> None:
        """Group ``pgid`` is gone."""
        if self.groups.pop(pgid, None) is not None:
            self._write()

    def close(self) -> None:
        """Remove the record, unless a group outlived its kill (the next gateway retries)."""
        if self.path is not None and not self.groups:
            self.path.unlink(missing_ok=True)
        self.path = None

    def _write(self) -> None:
        if self.path is None:
            return
        content = json.dumps({"owner": self._owner, "groups": list(self.groups.values())})
        temporary = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(content)
            os.replace(temporary, self.path)  # never a half-written record
        except OSError as error:
            if not self._write_failed:  # once: this is about the disk, not about each server
                logger.warning("cannot record MCP server processes in {}: {}", self.path, error)
            self._write_failed = True


def _owner_alive(owner: dict[str, Any]) -> bool:
    if owner.get("boot") != boot_id():
        return False  # rebooted since: every process it recorded is gone
    pid, recorded = owner.get("pid"), owner.get("start_time")
    return isinstance(pid, int) and recorded is not None and start_time(pid) == recorded


def _still_recorded(group: dict[str, Any]) -> bool:
    """Whether group ``pgid`` still holds the processes that were recorded, never others."""
    pgid, recorded = group.get("pgid"), group.get("start_time")
    if not isinstance(pgid, int) or pgid <= 1:
        return False
    leader = read_stat(pgid)
    if leader is not None and (leader.start_time != recorded or leader.pgid != pgid):
        return False  # the pid was reused: not ours
    # start_new_session made the leader's pid the session id of every member.
    live = members(pgid)
    return bool(live) and all(member.sid == pgid for member in live)


async def reap_leftovers(directory: Path) -> int:
    """Kill the recorded groups of every record in ``directory`` whose owner is dead, remove
    those records, and return how many groups were killed."""
    if not directory.is_dir():
        return 0
    killed = 0
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            owner, groups = record["owner"], list(record["groups"])
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring an unreadable MCP process record: {}", path)
            continue
        if _owner_alive(owner):
            continue
        leftovers = [group for group in groups if _still_recorded(group)]
        results = await asyncio.gather(
            *(terminate_group(group["pgid"], LEFTOVER_GRACE_S) for group in leftovers)
        )
        for group, gone in zip(leftovers, results, strict=True):
            logger.warning(
                "killed the leftover process group {} of MCP server {!r}: its hermes-core "
                "process (pid {}) ended without stopping it{}",
                group["pgid"],
                group.get("server"),
                owner.get("pid"),
                "" if gone else " (some members survived SIGKILL)",
            )
        killed += len(leftovers)
        with contextlib.suppress(OSError):
            path.unlink()
    return killed
