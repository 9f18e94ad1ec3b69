"""Shared parts of the benchmarks: the result row, percentiles, and the local processes.

Every process here listens on 127.0.0.1 only and is stopped by the context manager that
started it. The scripted OpenAI server runs as its own process so that its request handling
does not share the benchmark client's interpreter (and its GIL) with what is being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermes_core.testing import cli_env

#: The scripted model every benchmark talks to (``ok-*``: answers at once).
MODEL = "ok-bench"
#: Seconds a process gets to come up (or go down) before the benchmark gives up on it.
START_TIMEOUT_S = 60.0
LISTENING = re.compile(r"http platform listening on (http://\S+)")


@dataclass(frozen=True)
class Row:
    """One line of the results table: ``value`` against ``baseline`` (same unit), if any."""

    benchmark: str
    value: float
    unit: str
    baseline: float | None = None

    @property
    def ratio(self) -> float | None:
        """``value / baseline``, or None without a (non-zero) baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


async def json_of_fresh_process(script: str, arguments: list[str], timeout_s: float) -> Any:
    """Run ``script`` (with ``--json``) in a fresh interpreter, so nothing measured earlier in
    this one inflates or hides what it measures, and return the JSON it prints."""
    command = [sys.executable, script, *arguments, "--json"]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{Path(script).name} exited {process.returncode}")
    return json.loads(output)


async def fresh_process_main(
    description: str,
    options: Mapping[str, int],
    measure: Callable[..., Awaitable[dict[str, Any]]],
    rows: Callable[..., Awaitable[list[Row]]],
) -> list[Row]:
    """The command line of a benchmark that measures in a fresh interpreter: ``--url URL
    --json`` is that interpreter (it prints what ``measure(URL, **options)`` returns, for
    :func:`json_of_fresh_process`, and gives no rows); otherwise ``rows(url, **options)``
    against ``--url`` or a scripted server started for the run. ``options`` maps each integer
    option to its default."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    for name, value in options.items():
        parser.add_argument(f"--{name}", type=int, default=value)
    parser.add_argument("--url", help="a running scripted server (default: start one)")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = parser.parse_args()
    chosen = {name: getattr(args, name) for name in options}
    if args.json:
        if not args.url:
            parser.error("--json measures in this process and needs --url")
        print(json.dumps(await measure(args.url, **chosen)))
        return []
    if args.url:
        return await rows(args.url, **chosen)
    with scripted_server() as url:
        return await rows(url, **chosen)


def markdown_table(header: str, rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A Markdown table of ``rows`` (cells already formatted) under ``header`` (the column
    titles, ``" | "`` between them); ``align`` has an ``r`` for each column to right-align
    (numbers), ``l`` or nothing for the others."""
    titles = header.split(" | ")

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    rule = "".join("--:|" if side == "r" else "---|" for side in align.ljust(len(titles), "l"))
    return "\n".join([line(titles), "|" + rule, *map(line, rows)])


def percentile(samples: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of ``samples`` (at least one)."""
    ordered = sorted(samples)
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after the timeout."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def listening_process(command: list[str]) -> Iterator[Served]:
    """A process that prints ``listening on <url>`` as its first stdout line once it is
    bound; stopped (its whole process group) on exit."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, env=cli_env(), start_new_session=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError(f"{command[-2:]} did not start: {line!r}")
        yield Served(line.removeprefix("listening on ").strip(), process.pid)
    finally:
        _stop(process)


@contextlib.contextmanager
def scripted_process() -> Iterator[Served]:
    """The scripted OpenAI server (``hermes_core.testing.fake_openai``) as a process."""
    with listening_process([sys.executable, "-m", "hermes_core.testing.fake_openai", "0"]) as s:
        yield s


@contextlib.contextmanager
def scripted_server() -> Iterator[str]:
    """:func:`scripted_process`; yields its base URL (``http://127.0.0.1:PORT/v1``)."""
    with scripted_process() as served:
        yield served.url


def _wait_for_url(process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if match := LISTENING.search(log.read_text(errors="replace")):
            return match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("hermes-core run did not start listening:\n" + log.read_text())


@dataclass(frozen=True)
class Served:
    """A local server process the benchmarks started: its base URL and its pid."""

    url: str
    pid: int


@contextlib.contextmanager
def hermes_process(
    server_url: str,
    *,
    store_path: str | None = ":memory:",
    python: str = sys.executable,
    extra_settings: str = "",
    model: str = MODEL,
) -> Iterator[Served]:
    """A ``hermes-core run`` process serving the ``http`` platform on a free loopback port,
    its model ``local:<model>`` at ``server_url``, run by the interpreter ``python``.

    No third-party plugins are loaded (``HERMES_LOAD_PLUGINS=""``), logging stays at the
    default level, and the log goes to a file so a full pipe can never stall the process.
    ``extra_settings`` is TOML appended to the settings file; with ``store_path=None`` it
    holds the ``[store]`` table.
    """
    store = "" if store_path is None else f'[store]\npath = "{store_path}"'
    with tempfile.TemporaryDirectory(prefix="hermes-bench-") as work:
        settings = Path(work) / "settings.toml"
        settings.write_text(
            f"""
[agent]
model = "local:{model}"

[providers.local]
base_url = "{server_url}"
max_retries = 0

{store}

[platforms.http]
enabled = true
port = 0
{extra_settings}
"""
        )
        log = Path(work) / "hermes-core.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [python, "-m", "hermes_core", "run", "--settings", str(settings)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=work,
                env=cli_env(HERMES_LOAD_PLUGINS=""),
                start_new_session=True,
            )
        try:
            yield Served(_wait_for_url(process, log), process.pid)
        finally:
            _stop(process)
        if "Traceback" in log.read_text(errors="replace"):
            raise RuntimeError("hermes-core run logged a traceback:\n" + log.read_text())


@contextlib.contextmanager
def hermes_http(server_url: str, *, store_path: str = ":memory:") -> Iterator[str]:
    """:func:`hermes_process` with this interpreter; yields the URL it listens on."""
    with hermes_process(server_url, store_path=store_path) as served:
        yield served.url
