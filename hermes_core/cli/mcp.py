"""``hermes-core mcp``: list the configured MCP servers, test one, log in to an OAuth one.

Servers come from ``mcp.servers`` and from plugins' ``register_mcp_servers``, exactly as the
gateway sees them. A settings mistake ends in one line on stderr and exit code 2; a server
that cannot be started makes ``mcp test`` exit 1 with one line saying why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hermes_core.cli.options import EXIT_CONFIG, SettingsOption
from hermes_core.errors import ConfigError, HermesError
from hermes_core.log import configure_logging
from hermes_core.mcp.identity import describe_capabilities
from hermes_core.redaction import redact_text, redacted, register_settings

mcp_app = typer.Typer(
    help="List the MCP servers, test one, or log in to (out of) an OAuth server.",
    no_args_is_help=True,
)

EXIT_FAILED = 1


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"hermes-core: error: {redact_text(message)}", err=True)
    return typer.Exit(code)


async def _load(settings: Path | None) -> tuple[dict[str, Any], Any]:
    """Every server spec (settings and plugins) and the pool settings, as the gateway does."""
    from hermes_core.hookexec import PerPlugin
    from hermes_core.manager import PluginHost
    from hermes_core.mcp import MCPRegistry
    from hermes_core.mcp.settings import PoolSettings
    from hermes_core.settings import load_raw

    raw, _ = load_raw(settings)
    register_settings(raw)
    host = PluginHost()
    host.load(raw["plugins"]["disabled"])
    registry = MCPRegistry()
    await host.pm.hook.register_mcp_servers(register=PerPlugin(registry.registrar))
    mcp_table = raw.get("mcp") or {}
    registry.apply_settings(mcp_table.get("servers") or {})
    for spec in registry.specs.values():  # a plugin's servers have secrets of their own
        register_settings(dataclasses.asdict(spec))
    return dict(registry.specs), PoolSettings.from_mapping(mcp_table)


async def _spec(settings: Path | None, name: str, command: str) -> tuple[Any, Any]:
    """The spec of server ``name`` and the pool settings; a ConfigError for an unknown name."""
    specs, pool_settings = await _load(settings)
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none configured"
        raise ConfigError(f"mcp {command}", f"no MCP server named {name!r} (known: {known})")
    return spec, pool_settings


def _with_credentials(rows: list[dict[str, Any]], specs: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of servers with credentials get their header names (values masked) and OAuth
    grant, never a secret; other rows stay as they were."""
    for row in rows:
        spec = specs[row["name"]]
        if spec.headers:
            row["headers"] = dict.fromkeys(spec.headers, "***")
        if spec.oauth is not None:
            row["oauth"] = spec.oauth.grant
    return rows


async def _list(settings: Path | None, start: bool) -> tuple[list[dict[str, Any]], list[str]]:
    from hermes_core.mcp.pool import MCPPool

    specs, pool_settings = await _load(settings)
    pool = MCPPool()
    pool.configure(specs, pool_settings)
    if not start:
        return redacted(_with_credentials(pool.status(), specs)), []
    try:
        await pool.tools()  # starts every server, waits for each first attempt
        # Errors quote what a server wrote and the URL it was reached at.
        rows = redacted(_with_credentials(pool.status(), specs))
        return rows, [redact_text(line) for line in pool.collisions]
    finally:
        await pool.stop()


@mcp_app.command("list")
def list_servers(
    settings: SettingsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Do not start the servers (no tool names).")
    ] = False,
) -> None:
    """Servers with their source (settings or plugin), transport, state and tools."""
    configure_logging("CRITICAL")
    try:
        rows, collisions = asyncio.run(_list(settings, start=not no_start))
    except HermesError as error:
        raise _fail(str(error), EXIT_CONFIG) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no MCP servers configured (mcp.servers.<name> or a plugin)")
        return
    for row in rows:
        tools = ", ".join(row["tools"]) if row["tools"] else "-"
        credentials = "".join(f"  {header}: ***" for header in row.get("headers", ()))
        if "oauth" in row:
            credentials += f"  oauth={row['oauth']}"
        typer.echo(
            f"{row['name']}  source={row['source']}  transport={row['transport']}{credentials}  "
            f"state={row['state']}  tools: {tools}"
        )
        if row["last_error"]:
            typer.echo(f"    error: {row['last_error']}")
    for line in collisions:
        typer.echo(f"warning: {line}")


async def _test(settings: Path | None, name: str) -> int:
    from hermes_core.mcp.probe import probe_server

    spec, pool_settings = await _spec(settings, name, "test")
    probe = await probe_server(spec, pool_settings)
    if not probe.ok:
        typer.echo(f"hermes-core: mcp test {name}: {probe.error}", err=True)  # already redacted
        return EXIT_FAILED
    steps = ", ".join(f"{step} {seconds:.2f}s" for step, seconds in probe.timings.items())
    typer.echo(f"{name}: ready in {probe.ready_s:.2f}s ({steps}); {len(probe.tools)} tool(s)")
    for line in describe_capabilities(probe.initialized, probe.declared):
        typer.echo(f"  {line}")
    for tool in probe.tools:
        description = (tool.description or "").strip().splitlines()
        line = f"  {tool.name}" + (f": {description[0]}" if description else "")
        typer.echo(redact_text(line))  # a server's own text may quote its environment
    for tool_name, reason in probe.not_offered.items():
        typer.echo(redact_text(f"  {tool_name} {reason}"))
    typer.echo(f"{name}: stopped in {probe.stop_s:.2f}s")
    return 0


@mcp_app.command("test")
def test_server(name: str, settings: SettingsOption = None) -> None:
    """Start one server, list its tools with timings, stop it; exit 1 when it cannot start."""
    configure_logging("CRITICAL")  # the outcome is reported in one line, not in log noise
    try:
        code = asyncio.run(_test(settings, name))
    except HermesError as error:
        raise _fail(str(error), EXIT_CONFIG) from None
    raise typer.Exit(code)


async def _login(settings: Path | None, name: str) -> int:
    from hermes_core.mcp.login import LoginFailed, login

    spec, _ = await _spec(settings, name, "login")
    if spec.oauth is None or spec.oauth.grant != "authorization_code":
        problem = (
            "not an OAuth server (set [mcp.servers.NAME.oauth])"
            if spec.oauth is None
            else "uses grant client_credentials: the gateway gets its tokens itself"
        )
        raise ConfigError(f"mcp.servers.{name}.oauth", problem)
    try:
        result = await login(spec, typer.echo)
    except LoginFailed as error:
        typer.echo(f"hermes-core: mcp login {name}: {error}", err=True)
        return EXIT_FAILED
    typer.echo(f"logged in to {name}: {result.tools} tool(s); tokens in {result.token_file}")
    return 0


@mcp_app.command("login")
def login_server(name: str, settings: SettingsOption = None) -> None:
    """Log in to an OAuth server: prints a URL to open, then waits for the redirect (or a
    pasted redirect URL on stdin) and stores the tokens; exit 1 when the login fails."""
    configure_logging("CRITICAL")
    try:
        code = asyncio.run(_login(settings, name))
    except HermesError as error:
        raise _fail(str(error), EXIT_CONFIG) from None
    raise typer.Exit(code)


@mcp_app.command("logout")
def logout_server(name: str, settings: SettingsOption = None) -> None:
    """Delete the stored tokens (and client registration) of an OAuth server."""
    from hermes_core.mcp.auth import logout

    configure_logging("CRITICAL")
    try:
        asyncio.run(_spec(settings, name, "logout"))
    except HermesError as error:
        raise _fail(str(error), EXIT_CONFIG) from None
    if logout(name):
        typer.echo(f"logged out of {name}: stored tokens deleted")
    else:
        typer.echo(f"{name}: no stored tokens")
