"""hermes-core plugin ``mcp_example``: contribute the ``text`` MCP server.

The server (:mod:`hermes_mcp_example.server`) is a small ``MCPServer`` with text tools. The
plugin only *describes* it; hermes-core's gateway-wide pool starts it on first use, shares it
between every agent and session, restarts it with backoff if it dies and stops it at shutdown.

Settings still win: ``[mcp.servers.text]`` in ``settings.toml`` replaces this spec entirely
(e.g. ``enabled = false`` turns it off, or set a different ``timeout_s``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hermes_core import hookimpl
from hermes_core.mcp import RegisterMCPServer

SERVER_NAME = "text"
SERVER_SCRIPT = Path(__file__).with_name("server.py")


@hookimpl
def register_mcp_servers(register: RegisterMCPServer) -> None:
    """Register the ``text`` server: this interpreter running the server script over stdio."""
    # The script path, not ``-m``: MCP servers start with a minimal environment (no
    # PYTHONPATH), so a module import would fail when the plugin is not in site-packages.
    register(
        SERVER_NAME,
        command=sys.executable,
        args=[str(SERVER_SCRIPT)],
        timeout_s=10,
        startup_timeout_s=30,
    )
