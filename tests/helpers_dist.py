"""Real plugin distributions for tests, found through ``importlib.metadata`` entry points.

:func:`write_dist` writes a minimal installed distribution (one module plus a ``.dist-info``
holding ``METADATA`` and ``entry_points.txt``) into a directory; :func:`install_contrib`
pip-installs one of the ``contrib/`` plugins into a directory, once per test session. Put the
directory on ``sys.path`` (``monkeypatch.syspath_prepend``) for in-process tests, or on
``PYTHONPATH`` (:func:`hermes_core.testing.cli_env`) for ``hermes-core`` subprocesses.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hermes_core.testing import pip_install

REPO = Path(__file__).resolve().parents[1]

# --- plugin sources ------------------------------------------------------------------------

BROKEN_IMPORT = """
raise RuntimeError("broken on purpose at import")
"""

RAISING_POST_RUN = """
from hermes_core import hookimpl


@hookimpl
def post_run(session):
    secret = "local-value-never-logged"  # a log showing frame variables would print it
    raise RuntimeError("post_run exploded on purpose" + secret[:0])
"""

MISSPELLED_HOOK = """
from hermes_core import hookimpl


@hookimpl
def post_rum(session):
    pass
"""

WRAPPER_HOOK = """
from hermes_core import hookimpl


@hookimpl(hookwrapper=True)
def post_run(session):
    yield
"""

#: Writes ``<module>.imported`` next to itself when imported: proof that it was (or was not).
IMPORT_MARKER = """
from pathlib import Path

from hermes_core import hookimpl

Path(__file__).with_suffix(".imported").touch()


@hookimpl
def startup(gateway):
    pass
"""


def write_dist(
    site: Path,
    name: str,
    source: str,
    *,
    version: str = "1.0.0",
    entry_point: str | None = None,
) -> str:
    """Install a one-module plugin distribution ``name`` into ``site``.

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


def imported(site: Path, module: str) -> bool:
    """Whether an :data:`IMPORT_MARKER` plugin in ``site`` has been imported."""
    return (site / f"{module}.imported").exists()


def install_contrib(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``contrib/<name>`` pip-installed into a directory, once per session."""
    return pip_install(REPO / "contrib" / name, tmp_path_factory)
