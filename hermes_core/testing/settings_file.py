"""Settings for tests: the dicts that point a gateway at the scripted server, and settings
files for ``hermes-core`` subprocesses written from them."""

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


PROVIDER = "local"


def settings_for(
    base_url: str,
    model: str = "ok-primary",
    fallbacks: list[str] | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """Settings whose provider ``local`` is the scripted server at ``base_url``.

    ``model`` and ``fallbacks`` are bare scripted model names (``"bad-primary"``); each keyword
    argument is a settings section merged over the defaults, e.g. ``cache={"max_agents": 2}``.
    """
    settings: dict[str, Any] = {
        "agent": {
            "model": f"{PROVIDER}:{model}",
            "fallbacks": [f"{PROVIDER}:{name}" for name in fallbacks or []],
        },
        "providers": {PROVIDER: {"base_url": base_url, "max_retries": 0, "timeout_s": 10}},
    }
    for section, values in sections.items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings
