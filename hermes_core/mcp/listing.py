"""Listing what a server offers: every page of a listing, and which of its tools are offered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.results import RESOURCE_TOOL

if TYPE_CHECKING:
    from mcp_types import PaginatedRequestParams
    from mcp_types import Tool as MCPTool

#: Why a tool whose ``execution.taskSupport`` is ``required`` is left out.
TASK_REQUIRED = "is not offered: it must run as a task, which hermes-core's MCP client cannot do"


async def list_pages(list_page: Callable[..., Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paginated listing (``session.list_tools``, ``list_resources``...),
    ``field`` naming the items in each page."""
    from mcp_types import PaginatedRequestParams

    items: list[Any] = []
    cursor: str | None = None
    while True:
        params: PaginatedRequestParams | None = (
            PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        page = await list_page(params=params)
        items.extend(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            return items


def offered_tools(
    spec: MCPServerSpec, tools: list[MCPTool], not_offered: MutableMapping[str, str]
) -> list[MCPTool]:
    """The listed ``tools`` to offer: the allowlist applied, and none that must run as a task
    (the SDK's client cannot: ``tasks/get`` is not dispatched, so every call would fail).
    Tools left out are added to ``not_offered`` with why, logged once per tool."""
    offerable = []
    for tool in tools:
        if tool.execution is None or tool.execution.task_support != "required":
            offerable.append(tool)
        elif tool.name not in not_offered:
            not_offered[tool.name] = TASK_REQUIRED
            logger.warning("mcp server {!r}: tool {!r} {}", spec.name, tool.name, TASK_REQUIRED)
    allow = spec.tools
    if allow is None:
        return offerable
    # The built-in resource tool is allowlisted by name, but not one the server lists.
    missing = set(allow) - {tool.name for tool in tools} - {RESOURCE_TOOL}
    if missing:
        logger.warning(
            "mcp server {!r}: allowlisted tool(s) not offered by the server: {}",
            spec.name,
            ", ".join(sorted(missing)),
        )
    return [tool for tool in offerable if tool.name in allow]
