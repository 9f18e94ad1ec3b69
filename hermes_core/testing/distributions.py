"""Installed plugin distributions for tests, found through ``importlib.metadata`` entry points.

:func:`write_dist` writes a minimal one (one module, a ``.dist-info`` with ``METADATA`` and
``entry_points.txt``); :func:`install_into` pip-installs real projects into a directory, and
:func:`pip_install` does it once per test session. Put the directory on ``sys.path``
(``monkeypatch.syspath_prepend``) for in-process tests, or on ``PYTHONPATH``
(:func:`hermes_core.testing.cli_env`) for ``hermes-core`` subprocesses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

#: What a build writes into a source tree; left out of the copy that is built.
BUILD_LEFTOVERS = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests")

_installed: dict[Path, Path] = {}


def write_dist(
    site: Path,
    name: str,
    source: str,
    *,
    version: str = "1.0.0",
    entry_point: str | None = None,
) -> str:
    """Install a one-module plugin distribution ``name`` whose module is ``source`` into
    ``site``.

    The module is ``name`` with dashes as underscores; so is the entry-point name unless
    ``entry_point`` gives one. The entry-point name is returned (``plugins.disabled`` takes it).
    """
    module = name.replace("-", "_")
    entry_point = entry_point or module
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[hermes_core]\n{entry_point} = {module}\n")
    return entry_point


def install_into(target: Path, *sources: Path) -> Path:
    """``pip install --no-deps --target TARGET`` of the projects at ``sources``; returns
    ``target``. Each source is copied first, so its build leaves nothing behind in it."""
    with tempfile.TemporaryDirectory(prefix="hermes-dist-") as scratch:
        copies = [
            shutil.copytree(source, Path(scratch) / source.name, ignore=BUILD_LEFTOVERS)
            for source in sources
        ]
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        subprocess.run(
            [*pip, "--target", str(target), *map(str, copies)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return target


def pip_install(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`install_into` a fresh temporary directory, once per session for each
    ``source``; returns the directory."""
    source = source.resolve()
    if source not in _installed:
        work = tmp_path_factory.mktemp(f"dist-{source.name}")
        _installed[source] = install_into(work / "site", source)
    return _installed[source]
