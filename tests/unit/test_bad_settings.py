"""The bad-settings matrix: every kind of setting, given a wrong value, stops start-up.

Each case is a settings file (and maybe ``HERMES_`` variables) with one mistake. It must end in
a :class:`ConfigError` whose key names exactly the setting at fault, on one line, whether the
mistake is caught while reading the settings (types, ranges, model strings), while the gateway
collects its plugins (provider types, MCP servers) or while a platform is built (its own
table): :func:`check_settings` goes as far as ``hermes-core config check`` does. A few cases
also run the real ``hermes-core config check`` (exit code 2, one line, no traceback).

Cases marked ``as_dict`` are given to ``config_from_dict`` as a plain dict too. Good settings,
and how the other commands stop on a bad file, are in ``test_settings.py``.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hermes_core.errors import ConfigError
from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.platform_settings import build_platform
from hermes_core.settings import config_from_dict, load_config
from hermes_core.store import MemoryStore
from hermes_core.testing import cli_env, hermes_core, hermes_core_together
from hermes_core.testing.processes import Command

GOOD = """\
[agent]
model = "local:ok-primary"

[providers.local]
base_url = "http://127.0.0.1:9/v1"
"""
#: Not ``HERMES_``-prefixed: dynaconf would read that as a setting.
EMPTY_KEY_ENV = "BAD_SETTINGS_EMPTY_KEY"
#: Set nowhere: the name of a key variable that does not exist.
MISSING_KEY_ENV = "BAD_SETTINGS_MISSING_KEY"


def model(value: str) -> str:
    """:data:`GOOD` with ``value`` (TOML) as ``agent.model``."""
    return GOOD.replace('"local:ok-primary"', value)


def agent(line: str) -> str:
    """:data:`GOOD` with ``line`` added to ``[agent]``."""
    return GOOD.replace("[providers.local]", f"{line}\n\n[providers.local]")


def provider(line: str) -> str:
    """:data:`GOOD` with ``line`` added to ``[providers.local]``."""
    return f"{GOOD}{line}\n"


def section(text: str) -> str:
    """:data:`GOOD` followed by more tables."""
    return f"{GOOD}\n{text}\n"


def http(line: str) -> str:
    """:data:`GOOD` with the http platform enabled and ``line`` in its table."""
    return section(f"[platforms.http]\nenabled = true\n{line}")


def server(*lines: str) -> str:
    """:data:`GOOD` with an MCP server ``x`` made of ``lines``."""
    return section("[mcp.servers.x]\n" + "\n".join(lines))


@dataclass
class Case:
    """One mistake: the files written in a fresh directory, the environment, what is given as
    ``--settings``, the exact key the error must name and a piece of what it must say.

    ``{dir}`` in ``key`` stands for that directory.
    """

    id: str
    key: str
    says: str
    settings: str | bytes | None = GOOD
    env: dict[str, str] = field(default_factory=dict)
    argument: str | None = "settings.toml"
    secrets: str | bytes | None = None
    #: Make ``settings.toml`` a FIFO (nothing ever writes to it) instead of a file.
    fifo: bool = False
    #: More files written beside ``settings.toml``, by name.
    files: dict[str, str] = field(default_factory=dict)
    #: The mistake is expressible as a plain dict, so ``config_from_dict`` must reject it too.
    as_dict: bool = False
    #: Also run through ``hermes-core config check`` (each costs a process start).
    cli: bool = False


# fmt: off
BAD = [
    # --- agent: the model chain and the run loop's bounds --------------------------------------
    Case("malformed model", "agent.model", "got 'gpt-4o'", model('"gpt-4o"'), as_dict=True,
         cli=True),
    Case("malformed fallback", "agent.fallbacks[1]", "got 'no-colon'",
         agent('fallbacks = ["local:ok", "no-colon"]'), as_dict=True),
    Case("unknown provider", "agent.model", "unknown provider 'nope'", model('"nope:gpt-4o"'),
         as_dict=True, cli=True),
    Case("unknown fallback provider", "agent.fallbacks[0]", "unknown provider 'other'",
         agent('fallbacks = ["other:x"]'), as_dict=True),
    Case("missing model", "agent.model", "required", settings=None, argument=None,
         as_dict=True, cli=True),
    Case("model with spaces", "agent.model", "<provider>:<model>", model('"local: ok primary"')),
    Case("model without a provider", "agent.model", "got ':ok'", model('":ok"')),
    Case("model without a model name", "agent.model", "got 'local:'", model('"local:"')),
    Case("model an empty string", "agent.model", "required", model('""')),
    Case("model a list", "agent.model", "expected a string", model('["local:ok-primary"]')),
    Case("fallbacks a table", "agent.fallbacks", "expected a list",
         agent('fallbacks = { first = "local:ok-a" }')),
    Case("fallback a number", "agent.fallbacks[0]", "got 3", agent("fallbacks = [3]")),
    Case("fallback listed twice", "agent.fallbacks[1]", "local:ok-a is already agent.fallbacks[0]",
         agent('fallbacks = ["local:ok-a", "local:ok-a"]')),
    Case("fallback repeating the primary", "agent.fallbacks[0]", "is already agent.model",
         agent('fallbacks = ["local:ok-primary"]')),
    Case("system prompt a number", "agent.system_prompt", "expected a string",
         agent("system_prompt = 3")),
    Case("zero tool rounds", "agent.max_tool_rounds", "must be >= 1",
         agent("max_tool_rounds = 0")),
    Case("fractional tool rounds", "agent.max_tool_rounds", "expected an integer, got 2.5",
         agent("max_tool_rounds = 2.5")),
    Case("negative history", "agent.max_history_messages", "must be >= 1",
         agent("max_history_messages = -1")),
    # --- cache, circuit breaker, store, logging, plugins ----------------------------------------
    Case("wrong type in file", "cache.max_agents", "expected an integer, got 'many'",
         section('[cache]\nmax_agents = "many"'), as_dict=True, cli=True),
    Case("boolean for a number", "cache.max_agents", "expected an integer, got True",
         section("[cache]\nmax_agents = true"), as_dict=True),
    Case("section not a table", "cache", "expected a table", "cache = 3\n" + GOOD, as_dict=True),
    Case("bad log level", "logging.level", "'loud'", section('[logging]\nlevel = "loud"'),
         as_dict=True),
    Case("string for a list", "plugins.disabled", "expected a list",
         section('[plugins]\ndisabled = "eviction"'), as_dict=True),
    Case("no agent may be cached", "cache.max_agents", "must be >= 1",
         section("[cache]\nmax_agents = 0")),
    Case("a billion cached agents", "cache.max_agents", "must be <= 1000000",
         section("[cache]\nmax_agents = 1000000000")),
    Case("a century of idle time", "cache.idle_ttl_s", "must be <= 31536000",
         section("[cache]\nidle_ttl_s = 3153600000")),
    Case("a million tool rounds", "agent.max_tool_rounds", "must be <= 100",
         agent("max_tool_rounds = 1000000")),
    Case("negative idle time", "cache.idle_ttl_s", "must be >= 0",
         section("[cache]\nidle_ttl_s = -5")),
    Case("idle time not a number", "cache.idle_ttl_s", "got nan",
         section("[cache]\nidle_ttl_s = nan")),
    Case("breaker that never closes", "circuit_breaker.threshold", "must be >= 1",
         section("[circuit_breaker]\nthreshold = 0")),
    Case("breaker threshold in words", "circuit_breaker.threshold", "expected an integer",
         section('[circuit_breaker]\nthreshold = "three"')),
    Case("store path a number", "store.path", "expected a string", section("[store]\npath = 5")),
    Case("negative retention", "store.retention_days", "must be >= 0",
         section("[store]\nretention_days = -1")),
    Case("JSON logs as a word", "logging.json", "expected a boolean",
         section('[logging]\njson = "yes"')),
    Case("log level a number", "logging.level", "expected a string",
         section("[logging]\nlevel = 10")),
    Case("plugin names not strings", "plugins.disabled", "expected plugin names",
         section("[plugins]\ndisabled = [1]")),
    Case("plugins a list", "plugins", "expected a table", 'plugins = ["eviction"]\n' + GOOD),
    # --- providers ------------------------------------------------------------------------------
    Case("wrong provider type", "providers.local.timeout_s", "expected a number",
         provider('timeout_s = "fast"'), as_dict=True),
    Case("missing key env var", "providers.local.api_key_env",
         f"environment variable {MISSING_KEY_ENV} is not set",
         provider(f'api_key_env = "{MISSING_KEY_ENV}"'), as_dict=True, cli=True),
    Case("providers a list", "providers", "expected a table",
         'providers = ["local"]\n[agent]\nmodel = "local:x"\n'),
    Case("provider a string", "providers.local", "expected a table",
         '[agent]\nmodel = "local:x"\n[providers]\nlocal = "http://127.0.0.1:9/v1"\n'),
    Case("unknown provider type", "providers.local.type", "unknown provider type 'nosuch'",
         provider('type = "nosuch"')),
    Case("empty base_url", "providers.local.base_url", "required",
         GOOD.replace('"http://127.0.0.1:9/v1"', '""')),
    Case("base_url without a scheme", "providers.local.base_url", "http:// or https://",
         GOOD.replace('"http://127.0.0.1:9/v1"', '"127.0.0.1:9/v1"')),
    Case("negative timeout", "providers.local.timeout_s", "must be >= 0",
         provider("timeout_s = -1")),
    Case("zero timeout", "providers.local.timeout_s", "must be > 0", provider("timeout_s = 0")),
    Case("endless retry wait", "providers.local.max_retry_wait_s", "finite, got inf",
         provider("max_retry_wait_s = inf")),
    Case("fractional retries", "providers.local.max_retries", "expected an integer",
         provider("max_retries = 1.5")),
    Case("negative retries", "providers.local.max_retries", "must be >= 0",
         provider("max_retries = -1")),
    Case("base_url without a host", "providers.local.base_url", "expected a URL with a host",
         GOOD.replace('"http://127.0.0.1:9/v1"', '"http://"'), cli=True),
    Case("base_url an unclosed IPv6 address", "providers.local.base_url", "not a URL",
         GOOD.replace('"http://127.0.0.1:9/v1"', '"http://[::1/v1"')),
    Case("a billion retries", "providers.local.max_retries", "must be <= 100, got 1000000000",
         provider("max_retries = 1000000000"), cli=True),
    Case("a day-long request", "providers.local.timeout_s", "must be <= 3600",
         provider("timeout_s = 86400")),
    Case("key variable set but empty", "providers.local.api_key_env", "is not set",
         provider(f'api_key_env = "{EMPTY_KEY_ENV}"'), env={EMPTY_KEY_ENV: ""}),
    Case("api key a number", "providers.local.api_key", "expected a string",
         provider("api_key = 12345")),
    # --- platforms (checked when the adapter is built) --------------------------------------
    Case("http port a string", "platforms.http.port", "expected an integer, got '8080'",
         http('port = "8080"'), cli=True),
    Case("http port above 65535", "platforms.http.port", "must be <= 65535",
         http("port = 70000")),
    Case("negative http port", "platforms.http.port", "must be >= 0", http("port = -1")),
    Case("a 10 GB request body", "platforms.http.max_body_bytes", "must be <= 104857600",
         http("max_body_bytes = 10000000000")),
    Case("an endless stop grace", "platforms.http.stop_grace_s", "must be <= 3600",
         http("stop_grace_s = 1e9")),
    Case("api_keys a string", "platforms.http.api_keys", "expected a list of strings",
         http('api_keys = "sk-1"')),
    Case("api_keys not strings", "platforms.http.api_keys", "got item 1234",
         http("api_keys = [1234]")),
    Case("enabled as a word", "platforms.http.enabled", "expected true or false, got 'yes'",
         section('[platforms.http]\nenabled = "yes"')),
    Case("platform a number", "platforms.http", "expected a table",
         section("[platforms]\nhttp = 3")),
    Case("platform not installed", "platforms.nosuch.enabled", "no platform 'nosuch'",
         section("[platforms.nosuch]\nenabled = true")),
    # --- MCP servers (checked when the gateway collects them) ---------------------------------
    Case("command and url", "mcp.servers.x.command", "either command",
         server('command = "python3"', 'url = "http://127.0.0.1:9/mcp"'), cli=True),
    Case("neither command nor url", "mcp.servers.x.command", "required for a stdio server",
         server('args = ["server.py"]')),
    Case("unknown server key", "mcp.servers.x.colour", "unknown key",
         server('command = "python3"', 'colour = "red"')),
    Case("unknown transport", "mcp.servers.x.transport", "expected stdio or http, got 'sse'",
         server('command = "python3"', 'transport = "sse"')),
    Case("negative tool timeout", "mcp.servers.x.timeout_s", "must be > 0",
         server('command = "python3"', "timeout_s = -1")),
    Case("zero start-up timeout", "mcp.servers.x.startup_timeout_s", "must be > 0",
         server('command = "python3"', "startup_timeout_s = 0")),
    Case("a week-long tool call", "mcp.servers.x.timeout_s", "must be <= 3600",
         server('command = "python3"', "timeout_s = 604800")),
    Case("an endless restart wait", "mcp.backoff_max_s", "must be <= 86400",
         section("[mcp]\nbackoff_max_s = 1e12")),
    Case("args a string", "mcp.servers.x.args", "wrong type",
         server('command = "python3"', 'args = "server.py --port 1"')),
    Case("args holding a table", "mcp.servers.x.args", "expected strings",
         server('command = "python3"', "args = [{ port = 1 }]")),
    Case("env a list", "mcp.servers.x.env", "wrong type",
         server('command = "python3"', 'env = ["TOKEN=1"]')),
    Case("url not http", "mcp.servers.x.url", "http:// or https://",
         server('url = "ftp://127.0.0.1/mcp"')),
    Case("servers a list", "mcp.servers", "expected a table of servers",
         section('[mcp]\nservers = ["x"]')),
    Case("server a command line", "mcp.servers.x", "expected a table",
         section('[mcp.servers]\nx = "python3 server.py"')),
    Case("backoff cap below its start", "mcp.backoff_max_s", "mcp.backoff_initial_s",
         section("[mcp]\nbackoff_initial_s = 10\nbackoff_max_s = 1")),
    # --- the files themselves -------------------------------------------------------------------
    Case("invalid TOML", "{dir}/settings.toml", "invalid TOML", "[agent\nmodel = 1\n", cli=True),
    Case("invalid TOML in .secrets.toml", "{dir}/.secrets.toml", "invalid TOML",
         secrets="[providers.local]\napi_key = \n"),
    Case("missing --settings file", "--settings", "no such settings file", argument="nope.toml",
         cli=True),
    Case("missing HERMES_SETTINGS file", "HERMES_SETTINGS", "no such settings file",
         env={"HERMES_SETTINGS": "nope.toml"}, argument=None),
    Case("HERMES_SETTINGS selects the file", "agent.model", "unknown provider 'chosen'",
         files={"chosen.toml": model('"chosen:x"')}, env={"HERMES_SETTINGS": "chosen.toml"},
         argument=None, cli=True),
    Case("settings not UTF-8", "{dir}/settings.toml", "not UTF-8 text: byte 0xff",
         GOOD.encode() + b"# caf\xff\n", cli=True),
    Case("secrets not UTF-8", "{dir}/.secrets.toml", "not UTF-8 text: byte 0xe9",
         secrets='[providers.local]\napi_key = "caf\xe9"\n'.encode("latin-1")),
    Case("@int in the file that is not", "agent.model", "cannot parse the value",
         model('"@int abc"'), env={"HERMES_CACHE__MAX_AGENTS": "9"}),
    Case("a directory as --settings", "--settings", "is a directory", argument="conf.d",
         cli=True),
    Case("a directory as HERMES_SETTINGS", "HERMES_SETTINGS", "is a directory",
         env={"HERMES_SETTINGS": "conf.d"}, argument=None),
    Case("a FIFO as --settings", "--settings", "is not a regular file", argument="settings.toml",
         fifo=True, cli=True),
    Case("a FIFO as settings.toml", "{dir}/settings.toml", "not a regular file", argument=None,
         fifo=True, cli=True),
    # --- HERMES_ environment variables ---------------------------------------------------------
    Case("wrong type in env", "cache.max_agents", "expected an integer, got 'lots'",
         env={"HERMES_CACHE__MAX_AGENTS": "lots"}, cli=True),
    Case("env beats the file", "agent.model", "expected \"<provider>:<model>\", got 'from-env'",
         env={"HERMES_AGENT__MODEL": "from-env"}, cli=True),
    Case("fallbacks variable not a list", "agent.fallbacks", "got '[oops'",
         env={"HERMES_AGENT__FALLBACKS": "[oops"}),
    Case("disabled variable broken JSON", "plugins.disabled", "expected a list",
         env={"HERMES_PLUGINS__DISABLED": '{"a": }'}),
    Case("@int that is not", "HERMES_CACHE__MAX_AGENTS", "cannot parse the value",
         env={"HERMES_CACHE__MAX_AGENTS": "@int abc"}, cli=True),
    Case("@json that is not", "HERMES_AGENT__MODEL", "Cannot parse as JSON",
         env={"HERMES_AGENT__MODEL": "@json [1"}),
    Case("@format of a missing key", "HERMES_AGENT__MODEL", "cannot parse the value",
         env={"HERMES_AGENT__MODEL": "@format {this.nope}"}),
    Case("section variable a number", "cache", "expected a table", env={"HERMES_CACHE": "5"}),
    Case("number variable a boolean", "cache.idle_ttl_s", "got True",
         env={"HERMES_CACHE__IDLE_TTL_S": "true"}),
    Case("port variable a word", "platforms.http.port", "got 'eighty'", http(""),
         env={"HERMES_PLATFORMS__HTTP__PORT": "eighty"}),
    Case("servers variable a list", "mcp.servers", "expected a table of servers",
         env={"HERMES_MCP__SERVERS": '["x"]'}),
]
# fmt: on
CLI_CASES = [case for case in BAD if case.cli]


pytestmark = pytest.mark.usefixtures("no_hermes_env")


def write_case(case: Case, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / "conf.d").mkdir()
    if case.fifo:  # opening it would block until a writer comes: it must be refused unread
        os.mkfifo(where / "settings.toml")
    files = [(".secrets.toml", case.secrets), *case.files.items()] + (
        [] if case.fifo else [("settings.toml", case.settings)]
    )
    for name, content in files:
        if isinstance(content, str):
            (where / name).write_text(content, encoding="utf-8")
        elif content is not None:
            (where / name).write_bytes(content)


async def check_settings(argument: str | None, host: PluginHost) -> None:
    """What ``hermes-core config check`` does: read the settings, let the gateway collect
    every plugin's registrations, and build each enabled platform (nothing starts)."""
    config = load_config(argument)
    gateway = Gateway(config, host, store=MemoryStore())
    await gateway.configure()
    for name in gateway.platform_plan.names:
        build_platform(gateway, name)


def test_the_matrix_is_big_enough() -> None:
    assert len(BAD) >= 30
    assert len({case.id for case in BAD}) == len(BAD)


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
async def test_a_bad_setting_is_one_line_naming_the_key(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_host: PluginHost
) -> None:
    write_case(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError) as raised:
        await check_settings(case.argument, plugin_host)

    error = raised.value
    assert error.key == case.key.format(dir=tmp_path.resolve())
    assert case.says in error.problem
    assert "\n" not in str(error)
    assert str(error).startswith(f"{error.key}: ")


@pytest.mark.parametrize("case", [c for c in BAD if c.as_dict], ids=lambda c: c.id)
def test_config_from_dict_rejects_the_same_mistakes(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    assert not isinstance(case.settings, bytes)
    data = tomllib.loads(case.settings or "")

    with pytest.raises(ConfigError) as raised:
        config_from_dict(data)

    assert raised.value.key == case.key
    assert case.says in raised.value.problem


async def test_an_unreadable_file_is_one_line_naming_it(
    tmp_path: Path, plugin_host: PluginHost
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(GOOD)
    settings.chmod(0)
    try:
        if os.access(settings, os.R_OK):
            pytest.skip("this user reads files whatever their mode (root)")
        with pytest.raises(ConfigError) as raised:
            await check_settings(str(settings), plugin_host)
        result = hermes_core("config", "check", env=cli_env(), cwd=tmp_path)
    finally:
        settings.chmod(0o644)
    assert str(raised.value) == f"{settings}: cannot read it: Permission denied"
    assert result.returncode == 2
    assert result.stderr == f"hermes-core: error: {settings}: cannot read it: Permission denied\n"


# --- the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_check_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """``hermes-core config check`` for :data:`CLI_CASES`, all started at once."""
    commands: dict[str, Command] = {}
    for case in CLI_CASES:
        where = tmp_path_factory.mktemp("bad-settings")
        write_case(case, where)
        args = ["config", "check"]
        if case.argument is not None:
            args += ["--settings", case.argument]
        commands[case.id] = (args, cli_env(HERMES_LOAD_PLUGINS="", **case.env), where)
    results = hermes_core_together(commands)
    return {key: (where, results[key]) for key, (_, _, where) in commands.items()}


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_config_check_exits_2_with_one_line(
    case: Case,
    config_check_results: dict[str, tuple[Path, subprocess.CompletedProcess[str]]],
) -> None:
    where, result = config_check_results[case.id]

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"hermes-core: error: {case.key.format(dir=where.resolve())}: ")
    assert case.says in line
    assert "Traceback" not in result.stderr
