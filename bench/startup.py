"""Start-up time of ``hermes-core --help`` and ``hermes-core plugins``, with and without five
third-party plugins installed.

The plugins are the three in ``contrib/`` (``pip install --no-deps --target``, from a copy so
the build leaves nothing in the repository) and two generated one-module distributions, all in
one temporary directory put on ``PYTHONPATH``. Each command runs ``--runs`` times with the
plugins and as often without, alternating, from an empty working directory; the median wall
time of each is reported. ``plugins`` must list all five as loaded, or the benchmark fails.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from support import START_TIMEOUT_S, Row, child_env

REPO = Path(__file__).resolve().parents[1]
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
CONTRIB = ("hermes-evict-always", "hermes-mcp-example", "hermes-irc")
GENERATED = ("hermes-bench-one", "hermes-bench-two")
PLUGIN_SOURCE = '''"""A trivial plugin: one observer hook."""

from hermes_core import hookimpl


@hookimpl
def startup(gateway):
    pass
'''


def write_dist(site: Path, name: str) -> None:
    """An installed one-module distribution ``name`` with a ``hermes_core`` entry point."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(PLUGIN_SOURCE)
    info = site / f"{module}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(f"[hermes_core]\n{module} = {module}\n")


def install_plugins(work: Path, contrib: Sequence[str]) -> Path:
    """A directory holding the ``contrib`` plugins and the generated ones; returns it."""
    sources = [
        shutil.copytree(
            REPO / "contrib" / name,
            work / "src" / name,
            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
        )
        for name in contrib
    ]
    site = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
    subprocess.run([*pip, *map(str, sources)], check=True, capture_output=True, timeout=600)
    for name in GENERATED:
        write_dist(site, name)
    return site


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall seconds for one ``hermes-core`` command, and its standard output."""
    started = time.perf_counter()
    done = subprocess.run(
        [HERMES_CORE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=START_TIMEOUT_S,
        check=True,
    )
    return time.perf_counter() - started, done.stdout


def third_party_loaded(output: str) -> int:
    """How many non-built-in plugins ``hermes-core plugins`` reports as loaded."""
    return sum(1 for p in json.loads(output) if not p["builtin"] and p["status"] == "loaded")


def rows(runs: int = 7, contrib: Sequence[str] = CONTRIB) -> list[Row]:
    """Median start-up of each command with the plugins (five by default), against without."""
    with tempfile.TemporaryDirectory(prefix="hermes-bench-") as directory:
        work = Path(directory)
        site = install_plugins(work, contrib)
        plugins = len(contrib) + len(GENERATED)
        empty = work / "cwd"
        empty.mkdir()
        envs = {"with": child_env(PYTHONPATH=str(site)), "without": child_env()}
        result: list[Row] = []
        for args in (["--help"], ["plugins"]):
            seconds: dict[str, list[float]] = {"with": [], "without": []}
            for _ in range(runs):
                for kind, env in envs.items():
                    elapsed, output = timed(args, env, empty)
                    seconds[kind].append(elapsed)
                    if args == ["plugins"]:
                        expected = plugins if kind == "with" else 0
                        if third_party_loaded(output) != expected:
                            raise RuntimeError(f"expected {expected} plugins loaded:\n{output}")
            result.append(
                Row(
                    f"start-up `hermes-core {' '.join(args)}`, {plugins} plugins vs none",
                    statistics.median(seconds["with"]) * 1000,
                    "ms",
                    statistics.median(seconds["without"]) * 1000,
                )
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    for row in rows(parser.parse_args().runs):
        print(f"{row.benchmark:<56}{row.value:8.0f} ms  without plugins {row.baseline:.0f} ms")


if __name__ == "__main__":
    main()
