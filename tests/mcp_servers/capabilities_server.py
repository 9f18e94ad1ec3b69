"""A stdio MCP server using the client's capabilities (tests/mcp_pool/test_mcp_capabilities.py).

Tools:
- ``grow(name)`` adds a tool ``name`` and notifies ``tools/list_changed``; every listing after
  that takes ``LISTING_DELAY_S``, so a client that does not wait for the new listing misses it.
- ``background`` declares ``execution.taskSupport = "required"`` (it must be run as a task).
- ``roots`` answers the client's roots (``roots/list``) as JSON.
- ``summarize(text)`` asks the client's model (``sampling/createMessage``) and answers
  ``sampled by <model>: <text>``.
- ``confirm(question)`` asks the user (``elicitation/create``) and answers the action and
  the answer.
- ``linked`` answers a resource link to ``note://readme``.

Resources: ``note://readme`` (short text), ``note://big`` (10,000 characters).
Prompt: ``greet(name, mood)``.
"""

from __future__ import annotations

import asyncio
import json

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import (
    ResourceLink,
    SamplingMessage,
    TextContent,
    ToolExecution,
)
from mcp_types import Tool as MCPTool
from pydantic import BaseModel

LISTING_DELAY_S = 1.5
README = "hermes-core reads resources through a built-in tool."


class CapabilitiesServer(MCPServer):
    grown = False

    async def list_tools(self) -> list[MCPTool]:
        if self.grown:
            await asyncio.sleep(LISTING_DELAY_S)
        tools = await super().list_tools()
        for tool in tools:
            if tool.name == "background":
                tool.execution = ToolExecution(task_support="required")
        return tools


server = CapabilitiesServer("capabilities")


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool called ``name`` and notify the client that the tool list changed."""

    def added() -> str:
        return f"{name} was added at runtime"

    server.add_tool(added, name=name, description=f"added by grow({name!r})")
    server.grown = True
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@server.tool()
def background() -> str:
    """A long job that must run as a task."""
    return "done in the background"


@server.tool()
async def roots(ctx: Context) -> str:
    """The roots the client offers, as JSON."""
    result = await ctx.session.list_roots()
    return json.dumps([{"uri": str(root.uri), "name": root.name} for root in result.roots])


@server.tool()
async def summarize(text: str, ctx: Context) -> str:
    """Ask the client's model to summarize ``text``."""
    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(text=text))],
        max_tokens=50,
        system_prompt="Summarize.",
    )
    content = result.content
    answer = content.text if isinstance(content, TextContent) else repr(content)
    return f"sampled by {result.model}: {answer}"


class Answer(BaseModel):
    answer: str


@server.tool()
async def confirm(question: str, ctx: Context) -> str:
    """Ask the user ``question``."""
    result = await ctx.elicit(question, Answer)
    data = result.data.answer if result.action == "accept" and result.data else None
    return f"{result.action}: {data}"


@server.tool()
def linked() -> list[ResourceLink]:
    """A link to the readme resource."""
    return [ResourceLink(uri="note://readme", name="readme", mime_type="text/plain")]


@server.resource("note://readme", name="readme", mime_type="text/plain")
def readme() -> str:
    return README


@server.resource("note://big", name="big", mime_type="text/plain")
def big() -> str:
    return "x" * 10_000


@server.prompt()
def greet(name: str, mood: str = "cheerful") -> str:
    """Greet someone."""
    return f"Write a {mood} greeting for {name}."


if __name__ == "__main__":
    server.run("stdio")
