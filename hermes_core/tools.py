"""Tools the model may call: the interface, and the registry every agent reads from.

Tool sources (Python tools from ``register_tools``, MCP servers) all produce :class:`Tool`
objects; the run loop only ever sees this interface. Static tools are added once at startup;
dynamic sources (:class:`ToolSource`, e.g. the MCP pool) are asked again before every LLM call.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from loguru import logger

ToolHandler = Callable[[dict[str, Any]], "str | Awaitable[str]"]
RegisterTool = Callable[..., None]

#: What the OpenAI API accepts as a function name.
TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    """One callable tool as offered to the model."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler = field(repr=False)
    source: str = "python"
    timeout_s: float | None = None

    def schema(self) -> dict[str, Any]:
        """The tool in the OpenAI ``tools`` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    async def call(self, arguments: dict[str, Any]) -> str:
        """Run the handler. A plain function runs in a worker thread: a blocking tool must not
        stall every session, nor serialize the calls the model asked for together."""
        if inspect.iscoroutinefunction(self.handler):
            value: Any = self.handler(arguments)
        else:
            value = await asyncio.to_thread(self.handler, arguments)
        if inspect.isawaitable(value):
            value = await value
        return value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class ToolSet:
    """The tools offered in one LLM round, by name."""

    tools: dict[str, Tool]

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self.tools.values()]


class ToolSource(Protocol):
    """Tools that come and go at run time (MCP servers): asked for before every LLM call."""

    async def tools(self) -> list[Tool]:
        """The tools to offer now. Must not block for long: a slow source delays every run."""
        ...


class ToolRegistry:
    """Every tool by its offered name; a name clash is refused when the tool is added.

    Static tools live here; dynamic :class:`ToolSource` tools are read by :meth:`offered`.
    """

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._sources: list[ToolSource] = []
        self._shadowed: set[str] = set()

    def add(self, tool: Tool) -> None:
        if not TOOL_NAME_PATTERN.match(tool.name):
            raise ValueError(f"tool name {tool.name!r} must match {TOOL_NAME_PATTERN.pattern}")
        if (existing := self._tools.get(tool.name)) is not None:
            raise ValueError(
                f"tool {tool.name!r} from {tool.source} clashes with one from {existing.source}"
            )
        self._tools[tool.name] = tool

    def register(
        self,
        name: str,
        handler: ToolHandler,
        description: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """The ``register`` callback handed to ``register_tools``."""
        self.add(Tool(name, description, parameters or dict(EMPTY_SCHEMA), handler))

    def add_source(self, source: ToolSource) -> None:
        """Add a dynamic source; its tools are read afresh by every :meth:`offered` call."""
        self._sources.append(source)

    async def offered(self) -> ToolSet:
        """The tools to offer the model now: static tools, then every source's.

        Each LLM round gets its own :class:`ToolSet`, and resolves the model's calls against
        it, so concurrent runs never see each other's view of a restarting server.
        A source tool whose name is already taken is left out (logged once per name); a
        source that raises is skipped, so a broken source never fails a run.
        """
        offered: dict[str, Tool] = dict(self._tools)
        for source in self._sources:
            try:
                tools = await source.tools()
            except Exception as error:
                logger.opt(exception=error).error("tool source {!r} failed: {}", source, error)
                continue
            for tool in tools:
                if tool.name in offered:
                    if tool.name not in self._shadowed:
                        self._shadowed.add(tool.name)
                        logger.warning(
                            "tool {!r} from {} is hidden by a tool of the same name",
                            tool.name,
                            tool.source,
                        )
                    continue
                offered[tool.name] = tool
        return ToolSet(offered)

    def __len__(self) -> int:
        return len(self._tools)
