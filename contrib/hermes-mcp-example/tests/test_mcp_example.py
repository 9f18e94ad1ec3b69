"""The ``mcp_example`` plugin pip-installed and found through its entry point: ``hermes-core mcp
list`` shows its ``text`` server, and a console run calls its tools. Every server it starts is
gone when the command exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    hermes_core,
    pip_install,
    processes_mentioning,
    settings_for,
    write_settings,
)

pytestmark = pytest.mark.slow  # pip installs the package and each test runs hermes-core

SOURCE = Path(__file__).resolve().parents[1]
#: Nothing listens there: the provider is unused unless a run happens.
NO_PROVIDER = "http://127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(SOURCE, tmp_path_factory)


def settings_file(
    directory: Path, base_url: str, model: str, servers: dict[str, dict[str, Any]]
) -> Path:
    settings = settings_for(base_url, model, store={"path": ":memory:"}, mcp={"servers": servers})
    return write_settings(directory / "settings.toml", settings)


def test_mcp_list_shows_the_plugin_server_beside_the_settings_servers(
    tmp_path: Path, example_site: Path
) -> None:
    script = example_site / "hermes_mcp_example" / "server.py"
    servers = {
        "copy": {"command": sys.executable, "args": [str(script)], "tools": ["reverse"]},
        "off": {"command": "unused", "enabled": False},
    }
    settings = settings_file(tmp_path, NO_PROVIDER, "ok", servers)
    env = cli_env(example_site, HERMES_LOAD_PLUGINS="mcp_example")

    done = hermes_core("mcp", "list", "--json", "--settings", str(settings), env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["text"] == {
        "name": "text",
        "source": "mcp_example",
        "transport": "stdio",
        "state": "ready",
        "tools": ["word_count", "reverse", "slugify"],
        "starts": 1,
        "restarts": 0,
        "last_error": None,
    }
    assert (rows["copy"]["source"], rows["copy"]["tools"]) == ("settings", ["reverse"])
    assert rows["off"]["state"] == "disabled"
    assert processes_mentioning(str(example_site)) == []


def test_the_text_tools_answer_in_a_console_run(
    tmp_path: Path, example_site: Path, fake_openai: FakeOpenAI
) -> None:
    settings = settings_file(tmp_path, fake_openai.url, "tool-model", {})
    env = cli_env(example_site, HERMES_LOAD_PLUGINS="mcp_example")

    done = hermes_core(
        "run",
        "--settings",
        str(settings),
        env=env,
        cwd=tmp_path,
        stdin='call word_count {"text": "one two three"}\ncall reverse {"text": "abc"}\n',
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["tool results: 3", "tool results: cba"]
    assert processes_mentioning(str(example_site)) == []
