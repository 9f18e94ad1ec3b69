"""A server's prompts, for the ``/prompt <server>.<name> args…`` command.

Offered when the server declares the ``prompts`` capability and ``mcp.servers.<name>.prompts``
is true (the default). Arguments are given in the prompt's order or as ``name=value`` (quote a
value with spaces); the prompt's messages become the text the agent runs.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import anyio

from hermes_core.mcp.connection import ServerConnection
from hermes_core.mcp.listing import list_pages

if TYPE_CHECKING:
    from mcp_types import GetPromptResult, Prompt


class PromptProblem(Exception):
    """Why a prompt cannot be used, in one line for the user."""


def offers_prompts(connection: ServerConnection) -> bool:
    capabilities = connection.initialized.capabilities if connection.initialized else None
    return connection.spec.features.prompts and bool(capabilities and capabilities.prompts)


async def list_prompts(connection: ServerConnection) -> list[Prompt]:
    """The server's prompts (none when it is not ready or offers none)."""
    session = connection.live_session()
    if session is None or not offers_prompts(connection):
        return []
    with anyio.fail_after(connection.spec.timeout_s):
        prompts: list[Prompt] = await list_pages(session.list_prompts, "prompts")
    return prompts


def usage(server: str, prompt: Prompt) -> str:
    """``/prompt notes.greet name [mood]: Greet someone.``"""
    words = [a.name if a.required else f"[{a.name}]" for a in prompt.arguments or []]
    description = f": {prompt.description}" if prompt.description else ""
    return " ".join(["/prompt", f"{server}.{prompt.name}", *words]) + description


def bind_arguments(prompt: Prompt, args: str) -> dict[str, str]:
    """``args`` as the prompt's arguments: positional in its order, or ``name=value``."""
    try:
        words = shlex.split(args)
    except ValueError as error:
        raise PromptProblem(f"cannot read the arguments: {error}") from None
    declared = [argument.name for argument in prompt.arguments or []]
    bound: dict[str, str] = {}
    positional = iter(declared)
    for word in words:
        name, equals, value = word.partition("=")
        if equals and name in declared:
            bound[name] = value
            continue
        name = next((n for n in positional if n not in bound), "")
        if not name:
            raise PromptProblem(
                f"too many arguments: {prompt.name} takes {', '.join(declared) or 'none'}"
            )
        bound[name] = word
    missing = [a.name for a in prompt.arguments or [] if a.required and a.name not in bound]
    if missing:
        raise PromptProblem(f"missing argument(s): {', '.join(missing)}")
    return bound


async def render_prompt(connection: ServerConnection, name: str, args: str) -> str:
    """The text of prompt ``name`` with ``args``; a PromptProblem saying what is wrong."""
    from mcp.shared.exceptions import MCPError

    prompts = {prompt.name: prompt for prompt in await list_prompts(connection)}
    prompt = prompts.get(name)
    if prompt is None:
        known = ", ".join(sorted(prompts)) or "none"
        raise PromptProblem(
            f"MCP server {connection.name!r} has no prompt {name!r} (known: {known})"
        )
    arguments = bind_arguments(prompt, args)
    session = connection.live_session()
    if session is None:
        raise PromptProblem(connection.unavailable().removeprefix("error: "))
    try:
        with anyio.fail_after(connection.spec.timeout_s):
            result = await session.get_prompt(name, arguments)
    except MCPError as error:
        raise PromptProblem(f"MCP server {connection.name!r}: {error.message}") from None
    except TimeoutError:
        raise PromptProblem(f"MCP server {connection.name!r} did not answer in time") from None
    return _text(result)


def _text(result: GetPromptResult) -> str:
    """The messages as one text; an assistant's part is marked, the rest is the user's."""
    from mcp_types import EmbeddedResource, TextContent, TextResourceContents

    parts = []
    for message in result.messages:
        content = message.content
        if isinstance(content, TextContent):
            text = content.text
        elif isinstance(content, EmbeddedResource) and isinstance(
            content.resource, TextResourceContents
        ):
            text = content.resource.text
        else:
            text = f"[{content.type} content]"
        parts.append(text if message.role == "user" else f"(assistant) {text}")
    return "\n\n".join(parts)
