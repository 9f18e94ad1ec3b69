"""Tools the model may call: the interface, and the registry every agent reads from.

Tool sources (Python tools from ``register_tools``, MCP servers) all produce :class:`Tool`
objects; the run loop only ever sees this interface.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

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
        value = self.handler(arguments)
        if inspect.isawaitable(value):
            value = await value
        return value if isinstance(value, str) else str(value)


class ToolRegistry:
    """Every tool by its offered name; a name clash is refused when the tool is added."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

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

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)
