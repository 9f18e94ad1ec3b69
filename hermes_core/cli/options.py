"""What every ``hermes-core`` command shares: the ``--settings`` option and the exit code of a
configuration error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hermes_core.errors import EXIT_CONFIG

SettingsOption = Annotated[
    Path | None,
    typer.Option("--settings", help="Settings file (default: ./settings.toml, $HERMES_SETTINGS)."),
]

__all__ = ["EXIT_CONFIG", "SettingsOption"]
