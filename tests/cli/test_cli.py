"""The ``hermes-core`` command line as a user runs it: real subprocesses, real installed plugins.

Each subprocess costs the better part of a second, so each one is started once (module-scoped
fixtures) and several tests read its output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_dist import (
    BROKEN_IMPORT,
    IMPORT_MARKER,
    MISSPELLED_HOOK,
    NO_PARAMS_PROVIDER,
    RAISING_POST_RUN,
    WRAPPER_HOOK,
)

from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    hermes_core,
    hermes_core_together,
    write_dist,
    write_settings,
)
from hermes_core.testing.processes import TIMEOUT_S

BROKEN = "broken_import"
RAISER = "raising_plugin"

# --- hermes-core plugins -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugins_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """``hermes-core plugins`` with three broken plugins and two fine ones installed, and the
    built-in eviction disabled from the environment."""
    site = tmp_path_factory.mktemp("plugins-site")
    write_dist(site, "broken-import", BROKEN_IMPORT)
    write_dist(site, "misspelled-hook", MISSPELLED_HOOK)
    write_dist(site, "wrapper-hook", WRAPPER_HOOK)
    write_dist(site, "raising-plugin", RAISING_POST_RUN, version="2.3.4")
    write_dist(site, "hermes-fine", IMPORT_MARKER, version="0.1.0", entry_point="fine")
    env = cli_env(site, HERMES_PLUGINS__DISABLED='["eviction"]')
    return hermes_core("plugins", env=env, cwd=tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def listed(plugins_run: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in json.loads(plugins_run.stdout)}


def test_plugins_exits_0_despite_broken_plugins(
    plugins_run: subprocess.CompletedProcess[str],
) -> None:
    assert plugins_run.returncode == 0, plugins_run.stderr
    assert "Traceback" not in plugins_run.stderr


def test_plugins_lists_an_installed_plugin_with_its_distribution(
    listed: dict[str, dict[str, Any]],
) -> None:
    assert listed["fine"] == {
        "name": "fine",
        "dist": "hermes-fine",
        "version": "0.1.0",
        "hooks": ["startup"],
        "builtin": False,
        "status": "loaded",
    }
    assert listed[RAISER]["version"] == "2.3.4"
    assert listed[RAISER]["status"] == "loaded"


def test_plugins_lists_builtins_and_the_disabled_one(listed: dict[str, dict[str, Any]]) -> None:
    assert listed["eviction"]["status"] == "disabled"
    assert listed["eviction"]["builtin"] is True
    assert listed["eviction"]["hooks"] == []
    assert listed["circuit_breaker"]["status"] == "loaded"
    assert listed["circuit_breaker"]["hooks"] == ["post_run", "pre_run"]
    assert listed["circuit_breaker"]["dist"] == "hermes-core"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (BROKEN, "RuntimeError: broken on purpose at import"),
        ("misspelled_hook", "unknown hook 'post_rum'"),
        ("wrapper_hook", "old-style hookwrapper=True is not supported"),
    ],
)
def test_plugins_shows_each_broken_plugin_failed_with_its_error(
    listed: dict[str, dict[str, Any]],
    plugins_run: subprocess.CompletedProcess[str],
    name: str,
    error: str,
) -> None:
    assert listed[name]["status"] == "failed"
    assert error in listed[name]["error"]
    assert listed[name]["builtin"] is False
    [line] = [line for line in plugins_run.stderr.splitlines() if f"'{name}'" in line]
    assert f'plugins.disabled = ["{name}"]' in line


# --- --help --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["hermes-core"], [sys.executable, "-m", "hermes_core"]], ids=["script", "-m"]
)
def test_help_works_with_a_broken_plugin_installed(command: list[str], tmp_path: Path) -> None:
    write_dist(tmp_path / "site", "broken-import", BROKEN_IMPORT)
    if command == ["hermes-core"]:
        command = [str(Path(sys.executable).with_name("hermes-core"))]

    result = subprocess.run(
        [*command, "--help"],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path / "site"),
        cwd=tmp_path,
        timeout=TIMEOUT_S,
    )

    assert result.returncode == 0, result.stderr
    for subcommand in ("run", "demo", "plugins", "config"):
        assert subcommand in result.stdout
    assert result.stderr == ""


# --- hermes-core run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def console_run(
    tmp_path_factory: pytest.TempPathFactory, fake_server: FakeOpenAI
) -> subprocess.CompletedProcess[str]:
    """``hermes-core run`` on the console, two lines on stdin, with a plugin that fails to
    import and one whose ``post_run`` raises, and hook tracing on."""
    site = tmp_path_factory.mktemp("run-site")
    write_dist(site, "broken-import", BROKEN_IMPORT)
    write_dist(site, "raising-plugin", RAISING_POST_RUN)
    cwd = tmp_path_factory.mktemp("run-cwd")
    (cwd / "settings.toml").write_text(
        '[agent]\nmodel = "local:ok-primary"\n'
        f'[providers.local]\nbase_url = "{fake_server.url}"\nmax_retries = 0\n'
        # Never the user's own session store: its history would change the replies.
        f'[store]\npath = "{cwd / "sessions.db"}"\n'
    )
    env = cli_env(site, HERMES_TRACE_PLUGINS="1")
    return hermes_core("run", env=env, cwd=cwd, stdin="hello\nsecond\n")


def test_run_answers_on_stdout_and_exits_0_at_end_of_input(
    console_run: subprocess.CompletedProcess[str], fake_server: FakeOpenAI
) -> None:
    assert console_run.returncode == 0, console_run.stderr
    # stdin is not a terminal: no prompt, only the replies.
    assert console_run.stdout == (
        "[ok-primary] hello (user messages: 1)\n[ok-primary] second (user messages: 2)\n"
    )


def test_run_logs_one_line_naming_the_plugin_that_failed_to_import(
    console_run: subprocess.CompletedProcess[str],
) -> None:
    [line] = [line for line in console_run.stderr.splitlines() if BROKEN in line]
    assert "failed to load and was skipped" in line
    assert "RuntimeError: broken on purpose at import" in line
    assert f'plugins.disabled = ["{BROKEN}"]' in line


def test_run_logs_the_plugin_whose_post_run_raised_once_per_run(
    console_run: subprocess.CompletedProcess[str],
) -> None:
    raised = [
        line
        for line in console_run.stderr.splitlines()
        if f"plugin '{RAISER}' raised in post_run" in line
    ]
    assert len(raised) == 2
    assert all("post_run exploded on purpose" in line for line in raised)
    # The traceback is logged, but never the values of its variables (secrets live there).
    assert 'raise RuntimeError("post_run exploded on purpose" + secret[:0])' in console_run.stderr
    assert "local-value-never-logged" not in console_run.stderr


def test_trace_plugins_logs_hook_calls_with_plugins_and_durations(
    console_run: subprocess.CompletedProcess[str],
) -> None:
    calls = re.findall(r"hook (\w+) -> \[([^\]]*)\] in (\d+\.\d+) ms", console_run.stderr)
    hooks = [hook for hook, _, _ in calls]
    assert hooks.count("pre_run") == 2
    assert hooks.count("post_run") == 2
    assert "startup" in hooks and "shutdown" in hooks
    post_run_plugins = next(plugins for hook, plugins, _ in calls if hook == "post_run")
    # Third-party implementations run before the trylast built-ins.
    assert post_run_plugins.split(", ")[0] == RAISER
    assert {"eviction", "circuit_breaker"} <= set(post_run_plugins.split(", "))
    assert all(float(ms) >= 0 for _, _, ms in calls)


# --- a provider type that cannot take the request's parameters ---------------------------------


def test_a_provider_type_without_params_stops_run_and_config_check_in_one_line(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    plugin = write_dist(site, "no-params-provider", NO_PARAMS_PROVIDER)
    settings = write_settings(
        tmp_path / "settings.toml",
        {
            "agent": {"model": "mine:any"},
            "providers": {"mine": {"type": "plain"}},
            "store": {"path": str(tmp_path / "sessions.db")},
        },
    )
    env = cli_env(site)
    args = ("--settings", str(settings))

    done = hermes_core_together(
        {
            "run": (["run", *args], env, tmp_path),
            "check": (["config", "check", *args], env, tmp_path),
        }
    )

    expected = (
        f"hermes-core: error: providers.mine.type: provider type 'plain' from plugin "
        f"'{plugin}' cannot be used: PlainProvider.complete() does not accept **params, the "
        "request's parameters (temperature, max_tokens...); fix the plugin, or choose another "
        "type"
    )
    for command, result in done.items():
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.splitlines()[-1] == expected, command
        assert "Traceback" not in result.stderr, command
    assert not (tmp_path / "sessions.db").exists()  # the run stopped before opening anything
