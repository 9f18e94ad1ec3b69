"""A small MCP server for the tests, built on the SDK's ``MCPServer``.

Run it as ``python tests/mcp_servers/toolbox.py [--http PORT] [--chatty N] [--marker TEXT]``;
stdio is the default transport. ``--chatty N`` first prints N log lines on stdout, where only
JSON-RPC belongs: the mistake of a server that logs to stdout, before it serves normally.
``--marker`` is ignored by the server: tests put a unique text there so they can find the
process in ``/proc`` and prove it is gone.

Each start appends the process id to the file named by ``$TOOLBOX_PID_FILE`` (when set), so a
test can count how many times the server was started.

Tools: ``echo``, ``add``, ``sleep`` (seconds), ``fail`` (an MCP error result), ``crash`` (the
process exits at once), ``pid``, and ``grow`` (adds a tool named after its argument and tells
the client the tool list changed).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("toolbox")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return f"echo: {text}"


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def fail(reason: str) -> str:
    """Always fail with the given reason (an MCP error result, not a crash)."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """Exit the server process immediately, without answering."""
    os._exit(3)


@server.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool called ``name`` and notify the client that the tool list changed."""

    def added() -> str:
        return f"{name} was added at runtime"

    server.add_tool(added, name=name, description=f"added by grow({name!r})")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP on PORT")
    parser.add_argument("--chatty", type=int, default=0, help="print N log lines on stdout")
    parser.add_argument("--marker", default="", help="ignored; lets tests find this process")
    options = parser.parse_args()
    for number in range(options.chatty):
        print(f"INFO toolbox: warming up, step {number}", flush=True)
    pid_file = os.environ.get("TOOLBOX_PID_FILE")
    if pid_file:
        with open(pid_file, "a", encoding="utf-8") as file:
            file.write(f"{os.getpid()}\n")
    if options.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=options.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
