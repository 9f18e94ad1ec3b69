"""Settings files for ``hermes-core`` subprocesses, written from the dicts tests build."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynaconf.loaders import toml_loader


def write_settings(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write ``settings`` (a dict such as :func:`hermes_core.testing.settings_for` returns) to
    ``path`` as TOML, replacing the file; returns ``path``.

    dynaconf's own TOML writer does it, so a ``None`` value is written as dynaconf's ``@none``
    marker and reads back as ``None``.
    """
    toml_loader.write(path, dict(settings), merge=False)
    return path
