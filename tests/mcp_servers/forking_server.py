"""An MCP stdio server that starts a helper first, like ``sh -c 'helper & exec server'``.

Run it as ``python tests/mcp_servers/forking_server.py [serve|crash|silent] [--marker TEXT]``:

- ``serve`` (default): start the helper, then become the toolbox server (``exec``: same pid),
  which exits at the end of its stdin;
- ``crash``: start the helper, then exit at once with status 3, a server that crashes at start;
- ``silent``: start the helper, then read stdin without ever answering, and exit at its end.

The helper (``sleep``) stays in the server's process group and, as a background job of a shell
does, keeps the server's stdout open: only a client that kills the whole group stops it.

Each start appends ``<server pid> <helper pid> <alive>`` to ``$FORKING_PID_FILE`` when set;
``<alive>`` is 1 when the helper recorded on the line before is still running at that moment
(so a test can prove each helper was gone before the next server started), else 0.
``--marker`` is ignored: tests put a unique text there to find the process in ``/proc``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

TOOLBOX = Path(__file__).with_name("toolbox.py")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def record(pid_file: str, helper: int) -> None:
    path = Path(pid_file)
    lines = path.read_text().split("\n") if path.exists() else []
    previous = [line.split() for line in lines if line.strip()]
    alive = bool(previous) and running(int(previous[-1][1]))
    with path.open("a", encoding="utf-8") as file:
        file.write(f"{os.getpid()} {helper} {int(alive)}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="serve", choices=["serve", "crash", "silent"])
    parser.add_argument("--marker", default="", help="ignored; lets tests find this process")
    options = parser.parse_args()
    helper = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    pid_file = os.environ.get("FORKING_PID_FILE")
    if pid_file:
        record(pid_file, helper.pid)
    if options.mode == "crash":
        os._exit(3)
    if options.mode == "silent":
        for _ in sys.stdin.buffer:
            pass
        return
    os.execv(sys.executable, [sys.executable, str(TOOLBOX), "--marker", options.marker])


if __name__ == "__main__":
    main()
