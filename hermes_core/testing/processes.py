"""Real ``hermes-core`` processes, for tests that go end to end.

:func:`cli_env` is their environment (with plugins installed by
:mod:`hermes_core.testing.distributions` on ``PYTHONPATH``); start ``hermes-core`` with
:func:`hermes_core` (to completion), :func:`start_hermes_core` (without waiting) or
:func:`hermes_run_process` (``hermes-core run``, stopped when the test leaves it running).
:func:`processes_mentioning` proves that nothing a test started outlived it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

#: The console script of the interpreter running the tests.
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
#: Generous: other suites may share the cores, and this is a bound, not an expectation.
TIMEOUT_S = 60

K = TypeVar("K")


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


#: One command for :func:`hermes_core_together`: its arguments, environment and folder.
Command = tuple[Sequence[str], dict[str, str], Path]


def hermes_core_together(
    commands: Mapping[K, Command], timeout_s: float = TIMEOUT_S
) -> dict[K, subprocess.CompletedProcess[str]]:
    """Run ``hermes-core`` for each of ``commands`` at once, so many start-ups take about the
    time of the slowest; returns each one's result under its key. Whatever still runs when
    this fails is killed."""
    started: dict[K, subprocess.Popen[str]] = {}
    try:
        for key, (args, env, cwd) in commands.items():
            started[key] = start_hermes_core(*args, env=env, cwd=cwd)
        results = {}
        for key, process in started.items():
            stdout, stderr = process.communicate(timeout=timeout_s)
            results[key] = subprocess.CompletedProcess(
                process.args, process.returncode, stdout, stderr
            )
        return results
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


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
