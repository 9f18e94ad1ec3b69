"""The ``hermes-core`` command line.

Plugins are loaded only by the commands that need them, so ``--help`` works even when an
installed plugin is broken. A user mistake ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from hermes_core.cli.mcp import mcp_app
from hermes_core.cli.options import EXIT_CONFIG, SettingsOption
from hermes_core.cli.sessions import sessions_app
from hermes_core.cli.store import store_app
from hermes_core.errors import HermesError
from hermes_core.log import configure_logging
from hermes_core.redaction import redact_text, redacted, register_settings

app = typer.Typer(
    name="hermes-core",
    help="Run LLM agents behind chat platforms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or check the merged settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(sessions_app, name="sessions")
app.add_typer(mcp_app, name="mcp")
app.add_typer(store_app, name="store")


F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn a HermesError into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HermesError as error:
            typer.echo(f"hermes-core: error: {redact_text(str(error))}", err=True)
            raise typer.Exit(EXIT_CONFIG) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def run(settings: SettingsOption = None) -> None:
    """Start every enabled platform and serve until they finish or SIGINT/SIGTERM."""
    from hermes_core.gateway import Gateway
    from hermes_core.runner import run, serve
    from hermes_core.settings import load_config

    config = load_config(settings)
    configure_logging(config.get("logging.level").upper(), config.get("logging.json"))
    raise typer.Exit(run(serve(Gateway(config))))


@app.command()
@user_errors
def demo() -> None:
    """Run the whole stack on an embedded scripted LLM server: no account, no network."""
    from hermes_core.demo import run_demo

    configure_logging("ERROR")
    asyncio.run(run_demo(sys.stdout))


@app.command()
@user_errors
def plugins(settings: SettingsOption = None) -> None:
    """List plugins as JSON: name, dist, version, hooks, builtin, status (and error)."""
    from hermes_core.manager import PluginHost
    from hermes_core.settings import load_raw

    raw, _ = load_raw(settings)
    configure_logging(raw["logging"]["level"].upper(), raw["logging"]["json"])
    host = PluginHost()
    host.load(raw["plugins"]["disabled"])
    typer.echo(json.dumps(host.describe(), indent=2))


@config_app.command("show")
@user_errors
def config_show(settings: SettingsOption = None) -> None:
    """Print the merged settings as JSON, secrets redacted."""
    from hermes_core.settings import load_raw

    raw, source = load_raw(settings)
    register_settings(raw)  # a secret repeated under another key is masked there too
    typer.echo(json.dumps({"source": str(source) if source else None, **redacted(raw)}, indent=2))


@config_app.command("check")
@user_errors
def config_check(settings: SettingsOption = None) -> None:
    """Validate the settings, including provider types from plugins; exit 2 when wrong."""
    from hermes_core.settings import load_config

    config = load_config(settings)
    configure_logging("WARNING")
    # After the settings: a mistake is reported before the gateway's imports are paid for.
    from hermes_core.gateway import Gateway
    from hermes_core.platform_settings import build_platform

    async def check() -> None:
        gateway = Gateway(config)
        await gateway.configure()  # logs a warning for each unknown key
        # Building an adapter checks the keys it reads itself; none starts.
        for name in gateway.platform_plan.names:
            build_platform(gateway, name)

    asyncio.run(check())
    typer.echo(f"settings OK ({config.source or 'defaults and environment'})")


@app.command()
@user_errors
def health(settings: SettingsOption = None) -> None:
    """Print the configured models and their breaker settings as JSON (model health)."""
    from hermes_core.cli.health import health_report
    from hermes_core.settings import load_config

    config = load_config(settings)
    configure_logging("ERROR")
    typer.echo(json.dumps(asyncio.run(health_report(config)), indent=2))


@app.command()
def doctor(
    settings: SettingsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check settings, plugins, providers, MCP servers, platforms and the store.

    Prints a table with the fix for each failed check (--json: a list). Exit code 1 when
    something is broken, 2 when the settings themselves are invalid.
    """
    from hermes_core.cli.doctor import doctor as run_doctor

    run_doctor(settings, as_json)


def main() -> None:
    """Console-script entry point."""
    app()
