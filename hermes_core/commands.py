"""Slash commands: the registry fed by ``register_commands`` and what a handler receives."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.types import Message, Session


@dataclass(frozen=True)
class CommandContext:
    """Everything a command handler may need."""

    gateway: Gateway
    session: Session
    message: Message
    args: str


CommandHandler = Callable[[CommandContext], "str | Awaitable[str]"]
RegisterCommand = Callable[[str, CommandHandler, str], None]


@dataclass(frozen=True)
class Command:
    name: str
    handler: CommandHandler
    help: str

    async def __call__(self, ctx: CommandContext) -> str:
        value = self.handler(ctx)
        if inspect.isawaitable(value):
            value = await value
        return str(value)


class CommandRegistry:
    """Commands by name (``/reset``).

    The first plugin to register a name keeps it; since built-ins run last, a plugin that
    registers ``/status`` replaces the built-in one.
    """

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def register(self, name: str, handler: CommandHandler, help: str = "") -> None:
        """The ``register`` callback handed to ``register_commands``."""
        if not name.startswith("/") or len(name) < 2 or " " in name:
            raise ValueError(f"command name must look like '/name', got {name!r}")
        if name in self.commands:
            logger.debug("command {} already registered; keeping the first", name)
            return
        self.commands[name] = Command(name, handler, help)

    def parse(self, text: str) -> tuple[str, str] | None:
        """Split ``/name args`` into its parts; None when the text is not a slash command."""
        stripped = text.strip()
        if not stripped.startswith("/") or stripped.startswith("//"):
            return None
        name, _, args = stripped.partition(" ")
        return name.lower(), args.strip()
