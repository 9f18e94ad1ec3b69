"""An exclusive lock on a file that holds its owner's pid, released when the owner dies.

``flock`` locks belong to the open file, so the kernel drops them with the process that held
them, ``kill -9`` included: no stale lock to clean up by hand. The pid written in the file only
names the holder in the refusal; it is never trusted to decide anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another open file holds the lock: in another process (``pid``), or in this one."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        super().__init__(f"{path} is locked by pid {pid if pid is not None else 'unknown'}")


class PidLock:
    """``acquire()`` takes the lock on ``path`` (created if missing) or raises
    :class:`LockHeld`; ``release()`` deletes the file and drops the lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting and write our pid into the file.

        Raises:
            LockHeld: someone holds it.
            OSError: the file cannot be created or opened (read-only file system, ...).
        """
        if self._fd is not None:
            return
        while True:
            # Not inherited by child processes (PEP 446), so an MCP server the gateway
            # started cannot keep the lock alive after the gateway died.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise LockHeld(self.path, pid) from None
            except BaseException:
                os.close(fd)
                raise
            if _is_file_at(fd, self.path):
                break
            # The holder released (and deleted) it between our open and our lock: retry on
            # the file now at the path, or two processes would each lock a different file.
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Delete the file, then drop the lock (in that order, see :meth:`acquire`)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii", "replace").strip())
    except ValueError:  # the holder has not written it yet
        return None


def _is_file_at(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
