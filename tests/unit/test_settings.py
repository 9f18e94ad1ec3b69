"""Settings: files, ``.secrets.toml``, ``HERMES_`` environment variables, and what a mistake costs.

A bad setting must end start-up with exit code 2 and exactly one line naming the key, never a
traceback: the table of mistakes, for ``load_config``, ``config_from_dict`` and ``hermes-core
config check``, is ``test_bad_settings.py``; here, good settings and how the commands stop on a
bad file.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hermes_core import hookimpl
from hermes_core.errors import ConfigError
from hermes_core.redaction import redacted
from hermes_core.settings import config_from_dict, load_config
from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    hermes_core,
    settings_for,
)

KEY_ENV = "LOCAL_LLM_KEY"  # not HERMES_-prefixed: dynaconf would read that as a setting

GOOD = f"""
[agent]
model = "local:ok-primary"
fallbacks = ["local:ok-fallback"]

[providers.local]
base_url = "http://127.0.0.1:9/v1"
api_key_env = "{KEY_ENV}"
"""


def good_with(**replace: str) -> str:
    """:data:`GOOD` with some lines replaced, e.g. ``good_with(model='model = "x"')``."""
    text = GOOD
    for old_key, new_line in replace.items():
        old_line = next(line for line in text.splitlines() if line.startswith(f"{old_key} ="))
        text = text.replace(old_line, new_line)
    return text


SECRETS = """
[providers.local]
api_key = "sk-from-secrets"

[platforms.http]
api_keys = ["key-one", "key-two"]

[platforms.chat]
bot_token = "token-value"

[mcp.servers.gh.env]
GITHUB_TOKEN = "ghp-value"
"""


@pytest.fixture(autouse=True)
def no_key_env(no_hermes_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither ``HERMES_*`` settings nor the provider's key from the developer's shell."""
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_good_settings_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "settings.toml").write_text(GOOD)
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.chdir(tmp_path)

    config = load_config()

    assert str(config.model) == "local:ok-primary"
    assert [str(ref) for ref in config.fallbacks] == ["local:ok-fallback"]
    assert config.providers["local"].api_key == "sk-test"
    assert config.get("cache.max_agents") == 256  # a default filled in
    assert config.source == tmp_path / "settings.toml"


def test_env_overrides_beat_the_file_and_lists_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "settings.toml").write_text(
        GOOD + '[plugins]\ndisabled = ["eviction"]\n[cache]\nmax_agents = 5\n'
    )
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.setenv("HERMES_AGENT__MODEL", "local:from-env")
    monkeypatch.setenv("HERMES_CACHE__MAX_AGENTS", "7")
    monkeypatch.setenv("HERMES_PLUGINS__DISABLED", '["circuit_breaker"]')

    config = load_config(tmp_path / "settings.toml")

    assert str(config.model) == "local:from-env"
    assert config.get("cache.max_agents") == 7
    assert config.disabled_plugins == {"circuit_breaker"}  # replaced, not appended
    assert [str(ref) for ref in config.fallbacks] == ["local:ok-fallback"]  # the file's, kept


def test_hermes_settings_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "custom.toml").write_text(good_with(model='model = "local:chosen"'))
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.setenv("HERMES_SETTINGS", str(tmp_path / "custom.toml"))
    monkeypatch.chdir(tmp_path)

    assert str(load_config().model) == "local:chosen"


def test_secrets_file_next_to_the_settings_is_merged_into_its_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "settings.toml").write_text(GOOD.replace(f'api_key_env = "{KEY_ENV}"', ""))
    (tmp_path / ".secrets.toml").write_text(SECRETS)
    monkeypatch.chdir(tmp_path / "..")  # found next to the file, not in the working directory

    config = load_config(tmp_path / "settings.toml")

    provider = config.providers["local"]
    assert provider.base_url == "http://127.0.0.1:9/v1"  # from settings.toml, kept
    assert provider.api_key == "sk-from-secrets"  # from .secrets.toml, merged in


def test_mcp_server_env_names_keep_their_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "settings.toml").write_text(GOOD)
    (tmp_path / ".secrets.toml").write_text(SECRETS)
    monkeypatch.setenv(KEY_ENV, "k")
    monkeypatch.setenv("HERMES_MCP__SERVERS__GH__ENV__EXTRA_VAR", "from-env")

    config = load_config(tmp_path / "settings.toml")

    assert config.get("mcp.servers.gh.env") == {
        "GITHUB_TOKEN": "ghp-value",
        "EXTRA_VAR": "from-env",
    }


def test_config_from_dict_is_not_overridden_by_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    monkeypatch.setenv("HERMES_CACHE__MAX_AGENTS", "9")
    monkeypatch.setenv("HERMES_AGENT__MODEL", "local:from-env")

    config = config_from_dict(tomllib.loads(GOOD))

    assert str(config.model) == "local:ok-primary"  # set by the dict: the dict wins
    assert config.get("cache.max_agents") == 9  # left out by the dict: the env fills it


def test_redacted_hides_every_secret_and_nothing_else() -> None:
    settings = tomllib.loads(GOOD)
    settings["providers"]["local"].update(tomllib.loads(SECRETS)["providers"]["local"])
    shown = redacted({**tomllib.loads(SECRETS), "providers": settings["providers"]})

    assert shown["providers"]["local"]["api_key"] == "***"
    assert shown["providers"]["local"]["api_key_env"] == KEY_ENV  # a name, not a secret
    assert shown["providers"]["local"]["base_url"] == "http://127.0.0.1:9/v1"
    assert shown["platforms"]["http"]["api_keys"] == ["***", "***"]
    assert shown["platforms"]["chat"]["bot_token"] == "***"
    assert shown["mcp"]["servers"]["gh"]["env"]["GITHUB_TOKEN"] == "***"


# --- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("command", [["run"], ["config", "show"], ["plugins"]])
def test_other_commands_stop_on_a_bad_file_the_same_way(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("[agent\n")

    result = hermes_core(*command, env=cli_env(), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "settings.toml: invalid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_an_unknown_provider_exits_2_before_starting(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text(good_with(model='model = "nope:x"'))

    result = hermes_core("run", env=cli_env(**{KEY_ENV: "k"}), cwd=tmp_path, stdin="hello\n")

    assert result.returncode == 2
    assert (
        result.stderr == "hermes-core: error: agent.model: unknown provider 'nope' (known: local)\n"
    )
    assert result.stdout == ""


def test_config_check_accepts_good_settings(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text(GOOD)

    # config check starts the gateway, store included: keep it out of the user's data directory.
    env = cli_env(**{KEY_ENV: "k", "XDG_DATA_HOME": str(tmp_path / "data")})

    result = hermes_core("config", "check", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "settings OK" in result.stdout


def test_config_show_merges_secrets_and_redacts_them(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text(GOOD)
    (tmp_path / ".secrets.toml").write_text(SECRETS)

    result = hermes_core("config", "show", env=cli_env(HERMES_CACHE__MAX_AGENTS="3"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["source"] == str(tmp_path / "settings.toml")
    assert shown["providers"]["local"]["base_url"] == "http://127.0.0.1:9/v1"
    assert shown["providers"]["local"]["api_key"] == "***"
    assert shown["platforms"]["http"]["api_keys"] == ["***", "***"]
    assert shown["platforms"]["chat"]["bot_token"] == "***"
    assert shown["mcp"]["servers"]["gh"]["env"] == {"GITHUB_TOKEN": "***"}  # case kept
    assert shown["cache"]["max_agents"] == 3
    for secret in ("sk-from-secrets", "key-one", "token-value", "ghp-value"):
        assert secret not in result.stdout


# --- the schema: plugins' keys, unknown keys, unusual files ----------------------------------


class Greeter:
    """A plugin declaring two keys of its own, as docs/hooks.md shows."""

    @hookimpl
    def register_settings(self, register: Callable[..., None]) -> None:
        register("greeter.greeting", str, "hello", "What the greeter says.")
        register("greeter.repeat", int, 1, "How often.", minimum=1, maximum=10)


async def test_hook_register_settings(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI
) -> None:
    register_plugin(Greeter())

    defaults = await make_gateway(settings_for(fake_openai.url))
    assert defaults.config.get("greeter.greeting") == "hello"  # the declared default, filled in
    assert defaults.config.get("greeter.repeat") == 1

    chosen = await make_gateway(settings_for(fake_openai.url, greeter={"repeat": 3}))
    assert chosen.config.get("greeter.repeat") == 3  # read back, validated

    with pytest.raises(ConfigError) as raised:
        await make_gateway(settings_for(fake_openai.url, greeter={"repeat": 11}))
    assert str(raised.value) == "greeter.repeat: must be <= 10, got 11"

    typo = await make_gateway(settings_for(fake_openai.url, greeter={"greting": "hi"}))
    assert [str(u) for u in typo.unknown_settings] == [
        "unknown setting greeter.greting (did you mean greeter.greeting?); it is ignored"
    ]


def test_config_check_warns_about_an_unknown_key_with_the_closest_one(tmp_path: Path) -> None:
    text = (
        GOOD.replace("[agent]\n", "[agent]\nmodle = 'local:typo'\n") + "[cache]\nmax_agnets = 3\n"
    )
    (tmp_path / "settings.toml").write_text(text)
    env = cli_env(**{KEY_ENV: "k", "HERMES_LOAD_PLUGINS": ""})

    result = hermes_core("config", "check", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr  # a warning, not an error
    assert "settings OK" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2, result.stderr
    assert "unknown setting agent.modle (did you mean agent.model?)" in warnings[0]
    assert "unknown setting cache.max_agnets (did you mean cache.max_agents?)" in warnings[1]


def test_run_warns_about_an_unknown_key_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text(GOOD + "[platforms.console]\nenabeld = true\n")
    env = cli_env(**{KEY_ENV: "k", "HERMES_LOAD_PLUGINS": "", "XDG_DATA_HOME": str(tmp_path)})

    result = hermes_core("run", env=env, cwd=tmp_path, stdin="")  # the console ends at EOF

    assert result.returncode == 0, result.stderr
    assert (
        "unknown setting platforms.console.enabeld (did you mean platforms.console.enabled?)"
        in result.stderr
    )


def test_a_settings_file_starting_with_a_utf8_bom_is_read(tmp_path: Path) -> None:
    # Windows editors write one; tomllib alone refuses it ("Invalid statement (at line 1)").
    (tmp_path / "settings.toml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    env = cli_env(**{KEY_ENV: "k", "HERMES_LOAD_PLUGINS": "", "XDG_DATA_HOME": str(tmp_path)})

    result = hermes_core("config", "check", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "settings OK" in result.stdout


def test_plugins_with_a_bad_log_level_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text(GOOD + '[logging]\nlevel = "loud"\n')

    result = hermes_core("plugins", env=cli_env(HERMES_LOAD_PLUGINS=""), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == (
        "hermes-core: error: logging.level: expected TRACE, DEBUG, INFO, SUCCESS, WARNING, "
        "ERROR or CRITICAL, got 'loud'\n"
    )
    assert result.stdout == ""
