"""The built-in tool per server that lists and reads its resources (``<server>__resources``).

Offered when the server declares the ``resources`` capability and ``mcp.servers.<name>.resources``
is true (the default). Called with ``{}`` it lists the resources; with ``{"uri": ...}`` it reads
one, text cut at ``resource_max_chars``. Resource links in the server's tool results name it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio

from hermes_core.mcp.connection import ServerConnection
from hermes_core.mcp.listing import list_pages
from hermes_core.tools import Tool

if TYPE_CHECKING:
    from mcp_types import ReadResourceResult

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "uri": {
            "type": "string",
            "description": "The resource to read; leave out to list the resources.",
        }
    },
    "additionalProperties": False,
}


def resource_tool(connection: ServerConnection, timeout_s: float) -> Tool | None:
    """The tool for ``connection``'s resources, None when they are not offered."""
    name = connection.resource_tool
    if name is None:
        return None
    return Tool(
        name=name,
        description=(
            f"List the resources of MCP server {connection.name!r} (call with {{}}), or read "
            'one (call with {"uri": "..."}), such as a resource link one of its tools returned.'
        ),
        parameters=PARAMETERS,
        handler=functools.partial(use_resources, connection),
        source=f"mcp server {connection.name}",
        timeout_s=timeout_s,
    )


async def use_resources(connection: ServerConnection, arguments: dict[str, Any]) -> str:
    """List (no ``uri``) or read (``uri``) a resource; every outcome is text for the model."""
    from mcp.shared.exceptions import MCPError

    session = connection.live_session()
    if session is None:
        return connection.unavailable()
    uri = arguments.get("uri")
    try:
        with anyio.fail_after(connection.spec.timeout_s):
            if not uri:
                listed = await list_pages(session.list_resources, "resources")
                return _listing(connection.name, listed)
            result = await session.read_resource(str(uri))
    except TimeoutError:
        timeout = connection.spec.timeout_s
        return f"error: MCP server {connection.name!r} did not answer within {timeout:g}s"
    except MCPError as error:
        return f"error: MCP server {connection.name!r}: {error.message}"
    return _contents(result, connection.spec.features.resource_max_chars)


def _listing(server: str, resources: list[Any]) -> str:
    if not resources:
        return f"MCP server {server!r} has no resources."
    lines = []
    for resource in resources:
        about = ", ".join(filter(None, (resource.name, resource.mime_type)))
        description = f": {resource.description}" if resource.description else ""
        lines.append(f"{resource.uri} ({about}){description}")
    return "\n".join(lines)


def _contents(result: ReadResourceResult, max_chars: int) -> str:
    from mcp_types import TextResourceContents

    parts = []
    for content in result.contents:
        if isinstance(content, TextResourceContents):
            parts.append(content.text)
        else:
            size = len(content.blob) * 3 // 4
            parts.append(f"[binary resource {content.uri} ({content.mime_type}), ~{size} bytes]")
    text = "\n".join(parts)
    if len(text) <= max_chars:
        return text
    return (
        text[:max_chars] + f"\n[cut at {max_chars} of {len(text)} characters (resource_max_chars)]"
    )
