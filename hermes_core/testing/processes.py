"""Real ``hermes-core`` processes and pip-installed plugins, for tests that go end to end.

:func:`pip_install` installs a plugin's source tree into a directory once per test session;
put that directory on ``PYTHONPATH`` with :func:`cli_env` and start ``hermes-core`` with
:func:`hermes_core` (to completion), :func:`start_hermes_core` (without waiting) or
:func:`hermes_run_process` (``hermes-core run``, stopped when the test leaves it running).
:func:`processes_mentioning` proves that nothing a test started outlived it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

#: The console script of the interpreter running the tests.
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
#: Generous: other suites may share the cores, and this is a bound, not an expectation.
TIMEOUT_S = 60

_installed: dict[Path, Path] = {}


def pip_install(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --target`` of the project at ``source``, once per session;
    returns the target directory.

    The source is copied first so the build leaves nothing behind in it.
    """
    source = source.resolve()
    if source not in _installed:
        work = tmp_path_factory.mktemp(f"dist-{source.name}")
        copy = shutil.copytree(
            source,
            work / "src",
            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"),
        )
        target = work / "site"
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        subprocess.run(
            [*pip, "--target", str(target), str(copy)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        _installed[source] = target
    return _installed[source]


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
    timeout_s: float = TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``hermes-core ARGS`` to completion (stdin is a pipe, never a terminal)."""
    return subprocess.run(
        [HERMES_CORE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout_s,
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


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes (this one aside) with ``text`` in their command line or
    environment, read from ``/proc``: give what a test starts a unique marker (a path or a
    variable) and assert this is empty afterwards. Zombies have neither, so they do not count.
    """
    needle = text.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in seen:
            found.append(int(entry.name))
    return found
