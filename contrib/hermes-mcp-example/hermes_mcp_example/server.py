"""The ``text`` MCP server: a few deterministic text tools, served over stdio.

Run it alone with ``python -m hermes_mcp_example.server`` (it speaks MCP on stdin/stdout).
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("text", instructions="Deterministic text utilities.")


@server.tool()
def word_count(text: str) -> int:
    """Count the words in ``text`` (split on whitespace)."""
    return len(text.split())


@server.tool()
def reverse(text: str) -> str:
    """Return ``text`` reversed, character by character."""
    return text[::-1]


@server.tool()
def slugify(text: str) -> str:
    """Lower-case ``text`` and join its alphanumeric words with dashes."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return "-".join(words)


def main() -> None:
    """Serve over stdio until the client closes the connection."""
    server.run("stdio")


if __name__ == "__main__":
    main()
