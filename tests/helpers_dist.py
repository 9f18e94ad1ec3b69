"""Real plugin distributions for tests, found through ``importlib.metadata`` entry points.

:func:`write_dist` writes a minimal installed distribution (one module plus a ``.dist-info``
holding ``METADATA`` and ``entry_points.txt``) into a directory; :func:`install_contrib`
pip-installs one of the ``contrib/`` plugins into a directory, once per test session. Put the
directory on ``sys.path`` (``monkeypatch.syspath_prepend``) for in-process tests, or on
``PYTHONPATH`` (:func:`cli_env`) for ``hermes-core`` subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
#: Generous: other suites share the two cores, and this is a bound, not an expectation.
TIMEOUT_S = 60

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


_installed: dict[str, Path] = {}


def install_contrib(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --target`` of ``contrib/<name>``; built once per session.

    The source is copied first so the build leaves nothing behind in the repository.
    """
    if name not in _installed:
        work = tmp_path_factory.mktemp(f"contrib-{name}")
        source = shutil.copytree(
            REPO / "contrib" / name,
            work / "src",
            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
        )
        target = work / "site"
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        subprocess.run(
            [*pip, "--target", str(target), str(source)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        _installed[name] = target
    return _installed[name]


# --- subprocesses ----------------------------------------------------------------------------


def cli_env(*sites: Path, **variables: str) -> dict[str, str]:
    """The environment for a ``hermes-core`` subprocess: no inherited ``HERMES_`` settings,
    ``sites`` on ``PYTHONPATH``, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
    env.pop("PYTHONPATH", None)
    if sites:
        env["PYTHONPATH"] = os.pathsep.join(str(site) for site in sites)
    env.update(variables)
    return env


def hermes_core(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run ``hermes-core ARGS`` to completion (stdin is a pipe, never a terminal)."""
    return subprocess.run(
        [HERMES_CORE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=TIMEOUT_S,
    )


def start_hermes_core(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start ``hermes-core ARGS`` without waiting, so independent runs overlap."""
    return subprocess.Popen(
        [HERMES_CORE, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


@contextlib.asynccontextmanager
async def hermes_run_process(
    settings: Path, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``hermes-core run --settings SETTINGS`` in its own process group, stderr piped (the logs).
    The whole group is killed if the test leaves it running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hermes_core",
        "run",
        "--settings",
        str(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
