"""A broken MCP stdio server: it writes things that are not JSON-RPC on stdout.

Run it as ``python tests/mcp_servers/garbage_server.py [text|json|binary] [--marker TEXT]``:

- ``text`` (default): a start-up banner, then one line of prose for every line it reads, the
  classic mistake of a server that logs to stdout instead of stderr;
- ``json``: one JSON line per line read that is valid JSON but not a JSON-RPC message;
- ``binary``: bytes that are not UTF-8, then it waits.

It never answers ``initialize``, so a client must give up after its start-up timeout. Each start
appends the process id to ``$GARBAGE_PID_FILE`` when set. ``--marker`` is ignored: tests put a
unique text there to find the process in ``/proc``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="text", choices=["text", "json", "binary"])
    parser.add_argument("--marker", default="", help="ignored; lets tests find this process")
    options = parser.parse_args()
    pid_file = os.environ.get("GARBAGE_PID_FILE")
    if pid_file:
        with open(pid_file, "a", encoding="utf-8") as file:
            file.write(f"{os.getpid()}\n")
    out = sys.stdout.buffer
    if options.mode == "binary":
        out.write(b"\xff\xfe\x00garbage\x80\n")
        out.flush()
        time.sleep(600)
        return
    if options.mode == "text":
        out.write(b"Starting garbage server v1.0 on stdio...\n")
        out.flush()
    for line in sys.stdin.buffer:
        if options.mode == "json":
            reply = json.dumps({"hello": "world", "echo": len(line)})
        else:
            reply = f"received {len(line)} bytes, thinking about it"
        out.write(reply.encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
