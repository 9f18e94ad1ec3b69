"""No secret is ever printed: ``hermes-core run`` (HTTP replies, DEBUG logs, transcripts),
``config show``, ``doctor`` and ``mcp list|test``, all as real subprocesses; then the rules of
:mod:`hermes_core.redaction` and the log patcher, in process."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from mcp_servers.helpers import MARKER_ENV, free_port

from hermes_core.platforms import session_key
from hermes_core.plugins.http_settings import ApiKey
from hermes_core.redaction import (
    MASK,
    redact_text,
    redacted,
    register_secrets,
    scrub,
    secrets_in,
)
from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    hermes_core,
    hermes_core_together,
    hermes_run_process,
)
from hermes_core.testing.processes import Command

MARKER = f"test-redaction-{uuid.uuid4().hex}"


def secret(kind: str) -> str:
    """A unique secret value, long enough to be replaced wherever it appears."""
    return f"{kind}-{uuid.uuid4().hex[:12]}"


PROVIDER_KEY = secret("sk-provider")
HTTP_KEY = secret("http-client-key")
# Short kinds: the server's greeting below must fit in the 80 characters an error quotes.
ENV_VALUE = secret("env")
ARG_VALUE = secret("arg")
FLAG_VALUE = secret("flag")
URL_PASSWORD = secret("url-password")
QUERY_VALUE = secret("query-value")
HEADER_VALUE = secret("header-value")
CREDENTIAL = secret("credential")
EVERY_SECRET = (
    PROVIDER_KEY,
    HTTP_KEY,
    ENV_VALUE,
    ARG_VALUE,
    FLAG_VALUE,
    URL_PASSWORD,
    QUERY_VALUE,
    HEADER_VALUE,
    CREDENTIAL,
)

#: A stdio MCP server that greets on stdout with its secret environment value and arguments
#: (a classic mistake), then never answers: its greeting reaches the error of every start.
LEAKY_SERVER = """
import os, sys
print(f"leaky v1 {os.environ['LEAKY_VALUE']} {sys.argv[1]} {sys.argv[3]}", flush=True)
for line in sys.stdin:
    pass
"""


def assert_no_secret(text: str, where: str) -> None:
    """No secret, and no 8 characters of the random part of one (a formatter may cut a long
    value short, leaving most of it)."""
    leaked = [
        value
        for value in EVERY_SECRET
        for random_part in [value.rsplit("-", 1)[1]]
        if any(random_part[i : i + 8] in text for i in range(len(random_part) - 7))
    ]
    assert not leaked, f"{where} shows {leaked}:\n{text}"


pytestmark = pytest.mark.usefixtures("no_leaked_servers")


def write_settings(where: Path, *, base_url: str, model: str, extra: str = "") -> Path:
    """Settings with a secret of every shape: a provider key from the environment, HTTP API
    keys, and MCP servers with secrets in env, args (``--api-key=…``, ``--token …``), URL
    userinfo and URL query."""
    server = where / "leaky_server.py"
    server.write_text(LEAKY_SERVER)
    closed = free_port()  # nothing listens there
    path = where / "settings.toml"
    path.write_text(
        f"""
[logging]
level = "DEBUG"

[agent]
model = "local:{model}"

[providers.local]
base_url = "{base_url}"
api_key_env = "LOCAL_KEY"
max_retries = 0

[store]
path = "{where / "sessions.db"}"

[platforms.http]
enabled = true
port = 0
api_keys = ["{HTTP_KEY}"]

[mcp.servers.leaky]
command = "{sys.executable}"
args = ["{server}", "--api-key={ARG_VALUE}", "--token", "{FLAG_VALUE}"]
env = {{ LEAKY_VALUE = "{ENV_VALUE}", {MARKER_ENV} = "{MARKER}" }}
# Long enough for its greeting to arrive on a loaded machine: the greeting is what is checked.
startup_timeout_s = 4

[mcp.servers.remote]
url = "http://mcp-user:{URL_PASSWORD}@127.0.0.1:{closed}/mcp?region=eu&token={QUERY_VALUE}"
startup_timeout_s = 2
{extra}
"""
    )
    return path


def environment() -> dict[str, str]:
    # COLUMNS: doctor's table must not fold a line (and a secret) in two.
    return cli_env(HERMES_LOAD_PLUGINS="", LOCAL_KEY=PROVIDER_KEY, COLUMNS="500")


# --- a real run: upstream 401 echoing the key -------------------------------------------------


async def test_http_run_shows_an_echoed_key_in_no_reply_log_or_transcript(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    settings = write_settings(tmp_path, base_url=fake_openai.url, model="authecho-primary")
    async with hermes_run_process(settings, environment()) as process:
        assert process.stderr is not None
        logs: list[str] = []
        while "http platform listening on" not in (logs[-1] if logs else ""):
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            assert line, "hermes-core run ended before listening:\n" + "".join(logs)
            logs.append(line)
        url = logs[-1].split("listening on ")[1].strip()
        # Read on while the run logs, so a full pipe never stalls the process.
        drain = asyncio.create_task(process.stderr.read())
        async with httpx2.AsyncClient(timeout=60) as http:
            response = await http.post(
                f"{url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {HTTP_KEY}", "X-Hermes-Session": "s1"},
                json={"model": "any", "messages": [{"role": "user", "content": "hello"}]},
            )
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
        logs.append((await asyncio.wait_for(drain, 60)).decode())
    log = "".join(logs)

    # The upstream did echo the key it was sent: there was something to hide.
    (request,) = fake_openai.requests_for("authecho-")
    assert request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert response.status_code == 200, response.text
    assert response.headers["x-hermes-error-kind"] == "auth"
    reply = response.json()["choices"][0]["message"]["content"]
    assert f"Incorrect API key provided: {MASK}." in reply
    assert_no_secret(response.text, "the HTTP body")
    assert_no_secret(json.dumps(dict(response.headers)), "the HTTP headers")
    # DEBUG logs from hermes-core, openai, httpx2 and the mcp SDK (the leaky server's greeting).
    assert "401" in log and "leaky v1" in log, log
    assert_no_secret(log, "the DEBUG log")

    key = session_key("http", "s1", ApiKey.plain(HTTP_KEY).name)  # sessions belong to a key
    shown = hermes_core(
        "sessions", "show", key, "--settings", str(settings), env=environment(), cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert "hello" in shown.stdout
    assert_no_secret(shown.stdout + shown.stderr, "sessions show")


# --- the commands that print settings and server errors ---------------------------------------


COMMANDS = {
    "config show": ["config", "show"],
    "doctor": ["doctor"],
    "doctor --json": ["doctor", "--json"],
    "mcp list": ["mcp", "list"],
    "mcp list --json": ["mcp", "list", "--json"],
    "mcp test leaky": ["mcp", "test", "leaky"],
    "mcp test remote": ["mcp", "test", "remote"],
}
#: Only ``config show`` gets headers: MCP servers do not take them yet.
SHOW_ONLY = f"""
[providers.local.headers]
X-Api-Key = "{HEADER_VALUE}"

[chat]
client_credential = "{CREDENTIAL}"
"""


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every command's result, all started at once. The provider's base URL carries userinfo
    and a secret query value and points at a closed port, so ``doctor`` quotes it."""
    base_url = f"http://llm-user:{URL_PASSWORD}@127.0.0.1:{free_port()}/v1?api_key={QUERY_VALUE}"
    commands: dict[str, Command] = {}
    for name, args in COMMANDS.items():
        where = tmp_path_factory.mktemp("printed")
        extra = SHOW_ONLY if name == "config show" else ""
        settings = write_settings(where, base_url=base_url, model="ok", extra=extra)
        commands[name] = ([*args, "--settings", str(settings)], environment(), where)
    return hermes_core_together(commands, timeout_s=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_prints_no_secret(printed: dict[str, Any], command: str) -> None:
    done = printed[command]
    assert "Traceback" not in done.stderr, done.stderr
    assert_no_secret(done.stdout + done.stderr, command)


def test_config_show_masks_every_shape_of_secret_and_keeps_the_rest(
    printed: dict[str, Any],
) -> None:
    done = printed["config show"]
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    local = shown["providers"]["local"]
    assert local["api_key_env"] == "LOCAL_KEY"  # the variable's name is no secret
    assert local["base_url"].startswith(f"http://{MASK}@127.0.0.1:")
    assert local["base_url"].endswith(f"/v1?api_key={MASK}")
    assert local["headers"] == {"x-api-key": MASK}  # settings names are lower-cased
    assert shown["platforms"]["http"]["api_keys"] == [MASK]
    assert shown["chat"]["client_credential"] == MASK
    leaky = shown["mcp"]["servers"]["leaky"]
    assert leaky["args"][1:] == [f"--api-key={MASK}", "--token", MASK]
    assert leaky["env"] == {"LEAKY_VALUE": MASK, MARKER_ENV: MASK}
    assert shown["mcp"]["servers"]["remote"]["url"].endswith("/mcp?region=eu&token=***")


def test_doctor_reports_the_unreachable_servers_without_their_secrets(
    printed: dict[str, Any],
) -> None:
    done = printed["doctor --json"]
    rows = {row["check"]: row for row in json.loads(done.stdout)}
    assert rows["provider local endpoint"]["ok"] is False
    assert f"cannot reach http://{MASK}@127.0.0.1:" in rows["provider local endpoint"]["detail"]
    assert "leaky v1 ***" in rows["mcp leaky"]["detail"]
    assert f"http://{MASK}@127.0.0.1:" in rows["mcp remote"]["detail"]
    assert "cannot reach http://" in printed["doctor"].stdout  # unfolded: COLUMNS


def test_mcp_list_and_test_report_failures_without_their_secrets(
    printed: dict[str, Any],
) -> None:
    rows = {row["name"]: row for row in json.loads(printed["mcp list --json"].stdout)}
    assert f"leaky v1 {MASK} --api-key={MASK} {MASK}" in str(rows["leaky"]["last_error"]), rows
    assert f"token={MASK}" in rows["remote"]["last_error"]
    assert "leaky v1" in printed["mcp list"].stdout
    assert printed["mcp test leaky"].returncode == 1
    assert "leaky v1 ***" in printed["mcp test leaky"].stderr
    assert printed["mcp test remote"].returncode == 1
    assert f"cannot reach http://{MASK}@" in printed["mcp test remote"].stderr


# --- the rules, in process ---------------------------------------------------------------------


def test_redacted_masks_by_key_table_url_and_argument() -> None:
    settings = {
        "providers": {"p": {"api_key": "k", "api_key_env": "P_KEY", "timeout_s": 5}},
        "platforms": {"http": {"api_keys": ["a", {"name": "alice", "key_env": "ALICE_KEY"}]}},
        "store": {"url": "postgresql://app:pw@db:5432/hermes", "password_env": "PGPASS"},
        "svc": {"refresh_token": "t", "client_secret": "s", "basic_auth": "b", "empty_key": ""},
        "mcp": {"servers": {"x": {"env": {"HOME": "/h"}, "headers": {"Cookie": "c"}}}},
        "args": ["--key", "v", "--port", "8", "TOKEN=x", "-c", "srv --password p2 -v"],
    }

    shown = redacted(settings)

    assert shown["providers"]["p"] == {"api_key": MASK, "api_key_env": "P_KEY", "timeout_s": 5}
    assert shown["platforms"]["http"]["api_keys"] == [
        MASK,
        {"name": "alice", "key_env": "ALICE_KEY"},
    ]
    assert shown["store"] == {
        "url": f"postgresql://{MASK}@db:5432/hermes",
        "password_env": "PGPASS",
    }
    assert shown["svc"] == {
        "refresh_token": MASK,
        "client_secret": MASK,
        "basic_auth": MASK,
        "empty_key": "",  # "not set" hides nothing
    }
    assert shown["mcp"]["servers"]["x"] == {"env": {"HOME": MASK}, "headers": {"Cookie": MASK}}
    assert shown["args"] == [
        "--key",
        MASK,
        "--port",
        "8",
        f"TOKEN={MASK}",
        "-c",
        "srv --password *** -v",
    ]


def test_secrets_in_resolves_key_env_settings_and_header_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("P_KEY", "from-the-environment")
    monkeypatch.setenv("MANY_KEYS", "first-key-1,second-key-2")
    monkeypatch.setenv("HEADER_TOKEN", "header-token-value")
    settings = {
        "providers": {"p": {"api_key_env": "P_KEY", "base_url": "https://u:pw@h/?sig=sigvalue"}},
        "platforms": {"http": {"api_keys_env": "MANY_KEYS"}},
        "mcp": {"servers": {"x": {"headers": {"Authorization": "Bearer ${HEADER_TOKEN}"}}}},
    }

    found = set(secrets_in(settings))

    assert {"from-the-environment", "first-key-1", "second-key-2", "pw", "sigvalue"} <= found
    assert "Bearer header-token-value" in found


def test_scrub_replaces_registered_values_of_eight_characters_or_more() -> None:
    long_value, short_value = secret("scrub"), "short7!"
    spaced = f"{secret('with space')}/+"
    register_secrets([long_value, short_value, spaced, None])

    assert scrub(f"key {long_value} and {short_value}.") == f"key {MASK} and {short_value}."
    assert scrub(f"?k={quote(spaced, safe='')}&x=1") == f"?k={MASK}&x=1"  # as a URL carries it
    assert scrub("") == ""


def test_scrub_masks_what_is_left_of_a_secret_a_formatter_cut_short() -> None:
    value = secret("cut-short")
    register_secrets([value])

    # pydantic's input_value, a repr cut at a length, and an ellipsis in running text
    assert scrub(f"input_value='x {value[:-3]}...{value[-9:]} y'") == "input_value='x ***...*** y'"
    assert scrub(f"stdout: '{value[:10]}'") == "stdout: '***'"
    assert scrub(f"see {value[:9]}…") == "see ***…"
    # Fewer than 6 characters, or a piece not next to a cut, stay: they hide nothing.
    assert scrub(f"'{value[:5]}...' {value[:10]} x") == f"'{value[:5]}...' {value[:10]} x"


def test_redact_text_masks_urls_and_bearer_credentials_in_running_text() -> None:
    text = "cannot reach https://bob:pw@host:9/p?x=1&access_token=abc: refused; Bearer abcdefgh12."

    assert redact_text(text) == (
        f"cannot reach https://{MASK}@host:9/p?x=1&access_token={MASK}: refused; Bearer {MASK}."
    )


def test_log_patcher_scrubs_stdlib_records_and_chained_exceptions(tmp_path: Path) -> None:
    value = secret("logged")
    code = f"""
import logging
from hermes_core.log import configure_logging
from hermes_core.redaction import register_secrets

register_secrets(["{value}"])
configure_logging("DEBUG")
try:
    try:
        raise ValueError("upstream said {value}")
    except ValueError as cause:
        raise RuntimeError("request failed") from cause
except RuntimeError:
    logging.getLogger("httpx2").debug("sent %s to http://u:pw@h/", "{value}", exc_info=True)
"""

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )

    assert done.returncode == 0, done.stderr
    assert " DEBUG   sent *** to http://***@h/" in done.stderr
    assert "ValueError: upstream said ***" in done.stderr
    assert "RuntimeError: request failed" in done.stderr
    assert value not in done.stderr
