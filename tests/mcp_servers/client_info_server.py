"""A stdio MCP server whose tool ``client_info`` answers, as JSON, the ``clientInfo`` and the
capabilities the client sent in ``initialize``."""

from __future__ import annotations

import json

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("client-info")


@server.tool()
def client_info(ctx: Context) -> str:
    """The clientInfo and capabilities this connection's client declared."""
    params = ctx.session.client_params
    assert params is not None
    return json.dumps(
        {
            "client_info": params.client_info.model_dump(exclude_none=True),
            "capabilities": params.capabilities.model_dump(exclude_none=True),
        }
    )


if __name__ == "__main__":
    server.run("stdio")
