"""What every ``hermes-core`` command shares: the ``--settings`` option and the exit code of a
configuration error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SettingsOption = Annotated[
    Path | None,
    typer.Option("--settings", help="Settings file (default: ./settings.toml, $HERMES_SETTINGS)."),
]
#: A wrong setting, an unreadable settings file, a store that cannot be used.
EXIT_CONFIG = 2
