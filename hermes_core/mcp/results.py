"""Turn an MCP ``CallToolResult`` into the text a chat model reads as the tool's answer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_types import CallToolResult, ContentBlock

#: The built-in tool per server that lists and reads its resources (``<server>__resources``).
RESOURCE_TOOL = "resources"


def _block_text(block: ContentBlock, resource_tool: str | None) -> str:
    # The chat API takes text only: anything else is described, never dropped silently.
    from mcp_types import EmbeddedResource, ResourceLink, TextContent, TextResourceContents

    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, TextResourceContents):
            return resource.text
        return f"[binary resource {resource.uri} ({resource.mime_type or 'unknown type'})]"
    if isinstance(block, ResourceLink):
        about = ", ".join(filter(None, (block.name, block.mime_type, block.description)))
        link = f"[resource link {block.uri}" + (f" ({about})" if about else "")
        if resource_tool is None:
            return link + "]"
        return link + f"; read it with tool {resource_tool} {json.dumps({'uri': block.uri})}]"
    return f"[{block.type} content ({block.mime_type})]"


def result_text(result: CallToolResult, resource_tool: str | None = None) -> str:
    """The result's content as text; an ``isError`` result is prefixed with ``error:``.
    Resource links say how to read them when the server's ``resource_tool`` is offered."""
    parts = [_block_text(block, resource_tool) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, default=str))
    text = "\n".join(parts)
    return f"error: {text or 'the tool reported an error'}" if result.is_error else text
