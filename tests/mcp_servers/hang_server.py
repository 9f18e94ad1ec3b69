"""A hung MCP stdio server: it starts, then never reads or writes anything.

Run it as ``python tests/mcp_servers/hang_server.py [--marker TEXT]``. It ignores SIGTERM and
the end of its stdin and starts a child that does the same, so only killing the whole process
group with SIGKILL stops it: what a client must do once the start-up timeout has passed.

Each start appends the process id (then the child's) to ``$HANG_PID_FILE`` when set.
``--marker`` is ignored: tests put a unique text there to find the processes in ``/proc``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--marker", default="", help="ignored; lets tests find this process")
    parser.add_argument("--child", action="store_true", help="be the child: just hang")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids = [os.getpid()]
    if not options.child:
        child = [sys.executable, __file__, "--child", "--marker", options.marker]
        # Inherits the process group (and the ignored SIGTERM): a grandchild of the client.
        pids.append(subprocess.Popen(child, stdin=subprocess.DEVNULL).pid)
    pid_file = os.environ.get("HANG_PID_FILE")
    if pid_file and not options.child:
        with open(pid_file, "a", encoding="utf-8") as file:
            file.write("".join(f"{pid}\n" for pid in pids))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
