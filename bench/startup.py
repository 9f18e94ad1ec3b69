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
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from support import START_TIMEOUT_S, Row

from hermes_core.testing import cli_env, hermes_core, install_into, write_dist

REPO = Path(__file__).resolve().parents[1]
CONTRIB = ("hermes-evict-always", "hermes-mcp-example", "hermes-irc")
GENERATED = ("hermes-bench-one", "hermes-bench-two")
PLUGIN_SOURCE = '''"""A trivial plugin: one observer hook."""

from hermes_core import hookimpl


@hookimpl
def startup(gateway):
    pass
'''


def install_plugins(site: Path, contrib: Sequence[str]) -> Path:
    """``site`` holding the ``contrib`` plugins and the generated ones; returns it."""
    install_into(site, *(REPO / "contrib" / name for name in contrib))
    for name in GENERATED:
        write_dist(site, name, PLUGIN_SOURCE)
    return site


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall seconds for one ``hermes-core`` command, and its standard output."""
    started = time.perf_counter()
    done = hermes_core(*args, env=env, cwd=cwd, timeout_s=START_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"hermes-core {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return elapsed, done.stdout


def third_party_loaded(output: str) -> int:
    """How many non-built-in plugins ``hermes-core plugins`` reports as loaded."""
    return sum(1 for p in json.loads(output) if not p["builtin"] and p["status"] == "loaded")


def rows(runs: int = 7, contrib: Sequence[str] = CONTRIB) -> list[Row]:
    """Median start-up of each command with the plugins (five by default), against without."""
    with tempfile.TemporaryDirectory(prefix="hermes-bench-") as directory:
        work = Path(directory)
        site = install_plugins(work / "site", contrib)
        plugins = len(contrib) + len(GENERATED)
        empty = work / "cwd"
        empty.mkdir()
        envs = {"with": cli_env(site), "without": cli_env()}
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
