"""Built-in slash commands: ``/reset``, ``/new``, ``/model``, ``/status``, ``/prompt`` (an MCP
server's prompt), ``/help``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from hermes_core import hookimpl
from hermes_core.commands import CommandContext, RegisterCommand
from hermes_core.errors import ConfigError
from hermes_core.health.registry import clock_time
from hermes_core.mcp.prompts import PromptProblem, list_prompts, render_prompt, usage
from hermes_core.settings import ModelRef
from hermes_core.types import Message, Session


class _Breaker(Protocol):
    """The public API of the ``circuit_breaker`` plugin that ``/status`` reads."""

    def status(self, session: Session) -> _BreakerState: ...


class _BreakerState(Protocol):
    failures: int


def reset(ctx: CommandContext) -> str:
    ctx.gateway.reset_session(ctx.session, "reset")
    return "Started a new conversation. The previous one is kept in the transcript."


def model(ctx: CommandContext) -> str:
    gateway, session = ctx.gateway, ctx.session
    if not ctx.args:
        chain = ", ".join(str(ref) for ref in gateway.models_for(session))
        return f"Model: {chain}. Change it with /model <provider>:<model>."
    try:
        ref = ModelRef.parse(ctx.args, "/model")
    except ConfigError as error:
        return str(error)
    if ref.provider not in gateway.providers.configs:
        known = ", ".join(sorted(gateway.providers.configs))
        return f"Unknown provider {ref.provider!r}; configured: {known}."
    session.model = str(ref)
    gateway.cache.evict(session.key, "model_changed")
    return f"Model set to {ref} for this session."


def status(ctx: CommandContext) -> str:
    gateway, session = ctx.gateway, ctx.session
    agent = gateway.cache.peek(session.key)  # looking is not using: no LRU/idle refresh
    chain = gateway.models_for(session)
    lines = [
        f"Session: {session.key} (platform {session.platform})",
        "Models: " + ", ".join(str(ref) for ref in chain),
        f"Agent: {'cached, ' + str(agent.runs) + ' run(s)' if agent else 'not cached'}",
        f"History: {len(agent.history) if agent else 0} message(s) in the cached agent",
    ]
    lines += [f"Health: {health_line(gateway.health.describe(ref))}" for ref in chain]
    breaker = gateway.plugin("circuit_breaker")
    if breaker is not None:
        failures = cast(_Breaker, breaker).status(session).failures
        lines.append(f"Consecutive hard failures: {failures}")
    return "\n".join(lines)


def health_line(row: Mapping[str, Any]) -> str:
    """One model's gateway-wide health, as ``/status`` shows it."""
    if not row["enabled"]:
        return f"{row['model']} (health checks off)"
    if row["state"] == "closed":
        return f"{row['model']} closed"
    until = f" until {clock_time(row['retry_at'])}" if row["state"] == "open" else ""
    return f"{row['model']} {row['state']}{until} ({row['reason']})"


async def prompt(ctx: CommandContext) -> str:
    """``/prompt``: list the MCP servers' prompts; ``/prompt <server>.<name> args…``: run one."""
    connections = await ctx.gateway.mcp_pool.started()
    target, _, args = ctx.args.partition(" ")
    if not target:
        lines = [
            usage(name, found)
            for name, connection in connections.items()
            for found in await list_prompts(connection)
        ]
        return "\n".join(lines) or "No MCP server offers prompts."
    server, dot, name = target.partition(".")
    connection = connections.get(server)
    if not dot or connection is None:
        known = ", ".join(connections) or "none"
        return f"Usage: /prompt <server>.<name> args… (MCP servers: {known})"
    try:
        text = await render_prompt(connection, name, args)
    except PromptProblem as problem:
        return f"/prompt {target}: {problem}"
    message = Message(
        text=text,
        platform=ctx.message.platform,
        session_key=ctx.session.key,
        user_id=ctx.message.user_id,
    )
    result = await ctx.gateway.run_in_session(ctx.session, message)
    return result["final_response"] or ""


def help_(ctx: CommandContext) -> str:
    commands = ctx.gateway.commands.commands.values()
    return "\n".join(f"{command.name} - {command.help}" for command in commands)


@hookimpl(trylast=True)
def register_commands(register: RegisterCommand) -> None:
    register("/reset", reset, "start a new conversation (clears the circuit breaker)")
    register("/new", reset, "same as /reset")
    register("/model", model, "show the model, or switch: /model <provider>:<model>")
    register(
        "/status", status, "show this session's models and their health, agent and failure count"
    )
    register("/status", status, "show this session's model, agent and failure count")
    register("/prompt", prompt, "run an MCP server's prompt: /prompt <server>.<name> args…")
    register("/help", help_, "list the commands")
