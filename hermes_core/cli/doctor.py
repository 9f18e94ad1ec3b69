"""``hermes-core doctor``: run every check of :mod:`hermes_core.doctor` and print the report.

A table (✓ passed, ✗ failed with its fix on the next line, - skipped) or, with ``--json``, a
list of ``{check, ok, detail, fix}``. Exit code 0 when every check passed, 1 when one failed,
2 when the settings themselves are invalid (as every other command).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from hermes_core.doctor import EXIT_CONFIG, Report, run_checks
from hermes_core.errors import HermesError
from hermes_core.log import configure_logging

SYMBOLS = {True: ("✓", "green"), False: ("✗", "red"), None: ("-", "dim")}


def render(report: Report) -> None:
    """Print ``report`` as a table on stdout, then a one-line summary."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for result in report.results:
        symbol, style = SYMBOLS[result.ok]
        # Text, not markup: details hold brackets (plugins.disabled = ["x"]).
        detail = Text(result.detail)
        if result.fix:
            detail.append("\nfix: " + result.fix, style="yellow")
        table.add_row(Text(symbol, style=style), Text(result.check), detail)
    console = Console(highlight=False)
    console.print(table)
    failures = len(report.failures)
    if not report.settings_valid:
        summary = "✗ the settings are invalid: fix them first (exit code 2)"
    elif failures:
        summary = f"✗ {failures} of {len(report.results)} checks failed"
    else:
        summary = f"✓ all {len(report.results)} checks passed"
    console.print(Text(summary))


def doctor(settings: Path | None, as_json: bool) -> None:
    """Run the checks, print the report, exit with the report's code."""
    configure_logging("CRITICAL")  # every problem is a row of the report, not a log line
    try:
        report = asyncio.run(run_checks(settings))
    except HermesError as error:  # the checks report problems; this is a last resort
        typer.echo(f"hermes-core: error: {error}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if as_json:
        typer.echo(json.dumps([result.as_dict() for result in report.results], indent=2))
    else:
        render(report)
    raise typer.Exit(report.exit_code)
