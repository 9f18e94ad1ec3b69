"""MCP over authenticated HTTP against a real server with its own authorization server
(tests/mcp_servers/oauth_server.py, the SDK's server-side auth) over loopback: headers from
the environment, OAuth login (loopback redirect and pasted URL), refresh, logout, client
credentials; and the clientInfo hermes-core sends, recorded by a real stdio server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp_servers.helpers import accepts, free_port, stop_process, wait_until

from hermes_core.errors import ConfigError
from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.auth import FileTokenStorage, token_path
from hermes_core.mcp.connection import ServerConnection, ServerState
from hermes_core.mcp.identity import client_version
from hermes_core.mcp.settings import PoolSettings
from hermes_core.redaction import scrub

SERVERS = Path(__file__).resolve().parents[1] / "mcp_servers"
HERMES_CORE = str(Path(sys.executable).with_name("hermes-core"))
STATIC_TOKEN = "static-token-value-42"
CLIENT_SECRET = "client-secret-value-42"
TIMEOUT_S = 120


class AuthServer:
    """The OAuth-protected MCP server, its URL and its event log."""

    def __init__(self, tmp_path: Path, ttl: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.events_file = tmp_path / "events.log"
        self.events_file.touch()
        self.process = subprocess.Popen(
            [
                *(sys.executable, str(SERVERS / "oauth_server.py"), "--port", str(self.port)),
                *("--events", str(self.events_file), "--ttl", str(ttl)),
                *("--static-token", STATIC_TOKEN, "--client-id", "cc-client"),
                *("--client-secret", CLIENT_SECRET),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: accepts(self.port) or self.process.poll() is not None, "auth server")
        assert self.process.poll() is None, "the auth server exited at start"

    def events(self) -> list[str]:
        return self.events_file.read_text().split()


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The token directory's root, for this process and the CLI subprocesses."""
    home = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.setenv("TEST_TOKEN", STATIC_TOKEN)
    monkeypatch.setenv("TEST_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("WRONG", "not-the-secret")
    return home


@pytest.fixture(params=[3600])
def server(tmp_path: Path, data_home: Path, request: pytest.FixtureRequest) -> Iterator[AuthServer]:
    """The server, issuing tokens valid ``request.param`` seconds."""
    auth = AuthServer(tmp_path, ttl=request.param)
    try:
        yield auth
    finally:
        stop_process(auth.process)


def settings_file(tmp_path: Path, url: str) -> Path:
    """Servers ``headers`` (bearer from env), ``wrong``, ``login`` (OAuth), ``cc`` (client
    credentials) and ``badcc`` (a wrong secret), all on ``url``."""
    path = tmp_path / "settings.toml"
    path.write_text(
        f"""
[mcp.servers.headers]
url = "{url}"
headers = {{ Authorization = "Bearer ${{TEST_TOKEN}}" }}
[mcp.servers.wrong]
url = "{url}"
headers = {{ Authorization = "Bearer not-the-token" }}
[mcp.servers.login]
url = "{url}"
oauth = {{ scopes = ["tools"] }}
[mcp.servers.cc]
url = "{url}"
[mcp.servers.cc.oauth]
grant = "client_credentials"
client_id = "cc-client"
client_secret_env = "TEST_CLIENT_SECRET"
[mcp.servers.badcc]
url = "{url}"
[mcp.servers.badcc.oauth]
grant = "client_credentials"
client_id = "cc-client"
client_secret_env = "WRONG"
"""
    )
    return path


def hermes(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HERMES_CORE, *args], capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs
    )


def spec(name: str, **values: Any) -> MCPServerSpec:
    return MCPServerSpec.from_mapping(name, values, "settings")


async def call_once(server_spec: MCPServerSpec, tool: str) -> str:
    """Connect the way the gateway does, call ``tool``, disconnect."""
    connection = ServerConnection(server_spec, PoolSettings())
    connection.start()
    try:
        await connection.settled.wait()
        assert connection.state is ServerState.READY, connection.last_error
        return await connection.call(tool, {})
    finally:
        await connection.stop()


def start_login(settings: Path) -> tuple[subprocess.Popen[str], str]:
    """``hermes-core mcp login login`` running, and the authorization URL it printed."""
    process = subprocess.Popen(
        [HERMES_CORE, "mcp", "login", "login", "--settings", str(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "/authorize?" in line:
            return process, line.strip()
    process.kill()
    raise AssertionError(f"no authorization URL printed: {process.communicate()}")


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=TIMEOUT_S)
    return process.returncode, out, err


# --- headers -------------------------------------------------------------------------------


async def test_bearer_header_from_env_authenticates_tool_calls(server: AuthServer) -> None:
    headers = {"Authorization": "Bearer ${TEST_TOKEN}"}
    assert await call_once(spec("h", url=server.url, headers=headers), "whoami") == "client static"


def test_missing_header_variable_is_a_config_error_naming_key_and_variable(
    tmp_path: Path, data_home: Path
) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        '[mcp.servers.gh]\nurl = "http://127.0.0.1:9/mcp"\n'
        'headers = { Authorization = "Bearer ${NO_SUCH_TOKEN_VAR}" }\n'
    )
    result = hermes("mcp", "list", "--no-start", "--settings", str(path))
    assert result.returncode == 2
    assert "mcp.servers.gh.headers.authorization" in result.stderr.lower()
    assert "NO_SUCH_TOKEN_VAR is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_double_dollar_brace_is_a_literal_and_bare_dollar_untouched(data_home: Path) -> None:
    parsed = spec("x", url="http://h/mcp", headers={"X-A": "$${TEST_TOKEN} $HOME ${TEST_TOKEN}"})
    assert parsed.headers["X-A"] == f"${{TEST_TOKEN}} $HOME {STATIC_TOKEN}"
    assert STATIC_TOKEN not in repr(parsed)
    with pytest.raises(ConfigError, match="only an http server"):
        spec("s", command="x", headers={"A": "b"})


def test_refused_header_says_authentication_and_what_to_check(
    server: AuthServer, tmp_path: Path
) -> None:
    result = hermes("mcp", "test", "wrong", "--settings", str(settings_file(tmp_path, server.url)))
    assert result.returncode == 1
    assert "authentication problem with MCP server 'wrong'" in result.stderr
    assert "HTTP 401" in result.stderr and "mcp.servers.wrong.headers" in result.stderr
    assert "Server returned an error response" not in result.stderr
    assert "not-the-token" not in result.stderr + result.stdout


def test_list_shows_header_names_with_masked_values(server: AuthServer, tmp_path: Path) -> None:
    settings = str(settings_file(tmp_path, server.url))
    result = hermes("mcp", "list", "--no-start", "--json", "--settings", settings)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["headers"]["headers"] == {"authorization": "***"}
    assert rows["cc"]["oauth"] == "client_credentials"
    assert STATIC_TOKEN not in result.stdout and CLIENT_SECRET not in result.stdout


def test_mcp_test_reports_server_and_client_capabilities(
    server: AuthServer, tmp_path: Path
) -> None:
    result = hermes(
        "mcp", "test", "headers", "--settings", str(settings_file(tmp_path, server.url))
    )
    assert result.returncode == 0, result.stderr
    assert "server: oauth-toolbox (protocol " in result.stdout
    assert "capabilities: prompts, resources, tools" in result.stdout
    # Elicitation is on by default; roots and sampling only when configured.
    client = f"client: hermes-core {client_version()}; capabilities: elicitation (form, url)"
    assert client in result.stdout


# --- OAuth authorization code --------------------------------------------------------------


def test_not_logged_in_says_to_run_login(server: AuthServer, tmp_path: Path) -> None:
    result = hermes("mcp", "test", "login", "--settings", str(settings_file(tmp_path, server.url)))
    assert result.returncode == 1
    assert "authentication problem with MCP server 'login'" in result.stderr
    assert "run `hermes-core mcp login login`" in result.stderr


@pytest.mark.parametrize("server", [2], indirect=True)
async def test_login_through_loopback_redirect_then_calls_refresh_and_logout(
    server: AuthServer, tmp_path: Path, data_home: Path
) -> None:
    settings = settings_file(tmp_path, server.url)
    process, url = start_login(settings)
    # The "browser": approves at once and follows the redirect to the loopback receiver.
    page = httpx2.get(url, follow_redirects=True, timeout=30)
    assert page.status_code == 200 and "login received" in page.text
    code, out, err = finish(process)
    assert code == 0, err
    assert "logged in to login: 1 tool(s)" in out
    tokens = token_path("login")
    assert tokens.stat().st_mode & 0o777 == 0o600
    stored = json.loads(tokens.read_text())
    assert stored["tokens"]["access_token"] not in out + err
    assert server.events() == ["authorization_code"]

    oauth = {"scopes": ["tools"]}
    login_spec = spec("login", url=server.url, oauth=oauth)
    assert (await call_once(login_spec, "whoami")).startswith("client ")
    refreshes = server.events().count("refresh_token")  # 0, or 1 on a slow host
    # The 2 s token has expired: the stored token is refreshed before it is sent, not refused.
    refresh_at = json.loads(tokens.read_text())["refresh_at"]
    wait_until(lambda: time.time() > refresh_at + 2.5, "the token to expire")
    assert (await call_once(login_spec, "whoami")).startswith("client ")
    assert server.events().count("refresh_token") == refreshes + 1
    assert "rejected" not in server.events()

    result = hermes("mcp", "logout", "login", "--settings", str(settings))
    assert result.returncode == 0 and "stored tokens deleted" in result.stdout
    assert not tokens.exists()
    result = hermes("mcp", "test", "login", "--settings", str(settings))
    assert result.returncode == 1 and "hermes-core mcp login login" in result.stderr


def test_login_by_pasting_the_redirect_url(server: AuthServer, tmp_path: Path) -> None:
    process, url = start_login(settings_file(tmp_path, server.url))
    # The browser runs elsewhere: the redirect never reaches this host, its URL is pasted.
    redirect = httpx2.get(url, follow_redirects=False, timeout=30)
    assert redirect.status_code in (302, 303, 307)
    assert process.stdin is not None
    process.stdin.write("  \n" + redirect.headers["location"] + "\n")
    process.stdin.flush()
    code, out, err = finish(process)
    assert code == 0, err
    assert "logged in to login" in out and token_path("login").exists()


async def test_tokens_the_server_forgot_ask_for_a_new_login_in_one_line(
    server: AuthServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process, url = start_login(settings_file(tmp_path, server.url))
    httpx2.get(url, follow_redirects=True, timeout=30)
    assert finish(process)[0] == 0
    # A restarted authorization server knows neither the access nor the refresh token.
    stop_process(server.process)
    server.process = AuthServer(tmp_path, ttl=3600, port=server.port).process
    connection = ServerConnection(spec("login", url=server.url, oauth={}), PoolSettings())
    connection.start()
    try:
        await connection.settled.wait()
        assert connection.state is ServerState.BACKOFF
        assert connection.last_error == (
            "authentication problem with MCP server 'login': the server asks for a new login; "
            "run `hermes-core mcp login login`"
        )
    finally:
        await connection.stop()
    assert "OAuth flow error" not in caplog.text


async def test_stored_tokens_are_scrubbed_from_any_text(server: AuthServer, tmp_path: Path) -> None:
    process, url = start_login(settings_file(tmp_path, server.url))
    httpx2.get(url, follow_redirects=True, timeout=30)
    assert finish(process)[0] == 0
    tokens = await FileTokenStorage(token_path("login")).get_tokens()
    assert tokens is not None and tokens.refresh_token is not None
    text = scrub(f"sent {tokens.access_token}, refresh {tokens.refresh_token}")
    assert text == "sent ***, refresh ***"


def test_token_is_refreshed_before_it_expires(server: AuthServer, tmp_path: Path) -> None:
    process, url = start_login(settings_file(tmp_path, server.url))
    httpx2.get(url, follow_redirects=True, timeout=30)
    assert finish(process)[0] == 0
    stored = json.loads(token_path("login").read_text())
    lifetime = stored["tokens"]["expires_in"]
    # A 3600 s token is refreshed 60 s early, a short one a fifth of its life early.
    assert stored["refresh_at"] < time.time() + lifetime - 59


# --- client credentials --------------------------------------------------------------------


async def test_client_credentials_gets_tokens_headless(server: AuthServer, data_home: Path) -> None:
    oauth = {
        "grant": "client_credentials",
        "client_id": "cc-client",
        "client_secret_env": "TEST_CLIENT_SECRET",
    }
    assert await call_once(spec("cc", url=server.url, oauth=oauth), "whoami") == "client cc-client"
    assert server.events() == ["client_credentials"]
    assert token_path("cc").stat().st_mode & 0o777 == 0o600


def test_wrong_client_secret_is_an_authentication_problem(
    server: AuthServer, tmp_path: Path
) -> None:
    result = hermes(
        "mcp",
        "test",
        "badcc",
        "--settings",
        str(settings_file(tmp_path, server.url)),
    )
    assert result.returncode == 1
    assert "authentication problem with MCP server 'badcc'" in result.stderr
    assert "mcp.servers.badcc.oauth" in result.stderr
    assert "not-the-secret" not in result.stderr


# --- clientInfo ----------------------------------------------------------------------------


async def test_client_introduces_itself_as_hermes_core() -> None:
    stdio = spec("info", command=sys.executable, args=[str(SERVERS / "client_info_server.py")])
    received = json.loads(await call_once(stdio, "client_info"))
    assert received["client_info"] == {"name": "hermes-core", "version": client_version()}
    assert received["capabilities"] == {"elicitation": {"form": {}, "url": {}}}
