"""The ``http`` platform in a real ``hermes-core run`` process: signals and start-up refusal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
from helpers_http import user

from hermes_core.plugins.http_settings import ApiKey
from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    hermes_run_process,
    settings_for,
    write_settings,
)

LISTENING = re.compile(r"http platform listening on (http://\S+)")


def http_settings(path: Path, base_url: str, model: str, level: str = "INFO", **http: Any) -> Path:
    """A settings file: the scripted provider, logging at ``level``, and the http platform
    enabled with ``http``."""
    platforms = {"http": {"enabled": True, **http}}
    settings = settings_for(base_url, model, logging={"level": level}, platforms=platforms)
    return write_settings(path, settings)


def env() -> dict[str, str]:
    # No third-party plugins: the run must not depend on what else is installed.
    return cli_env(HERMES_LOAD_PLUGINS="")


def hermes(*args: str, settings: Path) -> subprocess.CompletedProcess[str]:
    """``hermes-core ARGS --settings SETTINGS`` to completion (``run`` only when it is
    expected to stop by itself, such as a start-up refusal)."""
    return subprocess.run(
        [sys.executable, "-m", "hermes_core", *args, "--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env(),
    )


@contextlib.asynccontextmanager
async def hermes_run(
    settings: Path, **variables: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A ``hermes-core run`` process (``variables`` added to its environment) in its own
    process group, and the URL it listens on. Killed (whole group) if the test leaves it
    running."""
    async with hermes_run_process(settings, {**env(), **variables}) as process:
        assert process.stderr is not None
        lines: list[str] = []

        async def listening() -> str:
            assert process.stderr is not None
            while line := (await process.stderr.readline()).decode():
                lines.append(line)
                if match := LISTENING.search(line):
                    return match.group(1)
            raise AssertionError("hermes-core run ended before listening:\n" + "".join(lines))

        url = await asyncio.wait_for(listening(), 60)
        drain = asyncio.create_task(_drain(process.stderr, lines))
        try:
            yield process, url
        finally:
            await asyncio.wait({drain}, timeout=30)
            drain.cancel()
    assert "Traceback" not in "".join(lines), "".join(lines)


async def _drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := (await stream.readline()).decode():
        lines.append(line)


async def ask(http: httpx2.AsyncClient, url: str, text: str) -> httpx2.Response:
    """POST ``text``, one user message, to the chat completions endpoint at ``url``."""
    return await http.post(
        f"{url}/v1/chat/completions", json={"model": "any", "messages": user(text)}
    )


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def wait_for(condition: object, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_sigterm_during_a_run_delivers_the_reply_and_exits_0(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    settings = http_settings(tmp_path / "s.toml", fake_openai.url, "slow-2-primary", port=0)
    async with hermes_run(settings) as (process, url), httpx2.AsyncClient(timeout=60) as http:
        request = asyncio.create_task(ask(http, url, "in flight"))
        await wait_for(lambda: len(fake_openai.requests) == 1)  # the run is at the model
        process.send_signal(signal.SIGTERM)
        response = await request
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    assert content == "[slow-2-primary] in flight (user messages: 1)"
    assert group_is_gone(process.pid), "a child of hermes-core outlived it"


async def test_sigint_with_nothing_in_flight_exits_0_promptly(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    settings = http_settings(tmp_path / "s.toml", fake_openai.url, "ok-primary", port=0)
    async with hermes_run(settings) as (process, url), httpx2.AsyncClient(timeout=60) as http:
        assert (await ask(http, url, "hi")).status_code == 200
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    assert group_is_gone(process.pid)


def test_non_loopback_host_without_api_keys_exits_2_with_one_line(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    # Only warnings and errors on stderr, so the refusal is the one line there.
    settings = http_settings(
        tmp_path / "s.toml", fake_openai.url, "ok-primary", "WARNING", host="0.0.0.0", port=0
    )
    done = hermes("run", settings=settings)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("hermes-core: error: platforms.http.host: ")
    assert "0.0.0.0 without API keys" in lines[0]


def test_a_port_in_use_exits_2_with_one_line_naming_the_key_and_address(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        settings = http_settings(
            tmp_path / "s.toml", fake_openai.url, "ok-primary", "WARNING", port=port
        )
        done = hermes("run", settings=settings)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"hermes-core: error: platforms.http.port: cannot listen on 127.0.0.1:{port}: "
    )


async def test_a_bracketed_ipv6_host_passes_config_check_and_serves(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    settings = http_settings(
        tmp_path / "s.toml", fake_openai.url, "ok-primary", host="[::1]", port=0
    )
    check = hermes("config", "check", settings=settings)
    assert check.returncode == 0, check.stderr
    async with hermes_run(settings) as (process, url), httpx2.AsyncClient(timeout=60) as http:
        assert url.startswith("http://[::1]:")
        response = await ask(http, url, "over v6")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    assert response.json()["choices"][0]["message"]["content"].startswith("[ok-primary] over v6")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_800_half_open_connections_are_closed_after_header_timeout_s(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Slow clients: 800 connections each send half a request line and stall. After
    header_timeout_s the server has closed every one and holds its usual descriptors again,
    and it still answers."""
    settings = http_settings(
        tmp_path / "s.toml", fake_openai.url, "ok-primary", port=0, header_timeout_s=1
    )
    async with hermes_run(settings) as (process, url), httpx2.AsyncClient(timeout=60) as http:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        before = open_fds(process.pid)
        connections = []
        try:
            for _ in range(800):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(b"POST /v1/chat/completions HTT")
                connections.append((reader, writer))
            await asyncio.gather(*(writer.drain() for _, writer in connections))
            await wait_for(lambda: open_fds(process.pid) >= before + 800, timeout=30)
            loop = asyncio.get_running_loop()
            stalled = loop.time()
            ends = await asyncio.wait_for(
                asyncio.gather(*(reader.read() for reader, _ in connections)), 30
            )
            closed_after = loop.time() - stalled
        finally:
            for _, writer in connections:
                writer.close()
        assert ends == [b""] * 800, "the server answered or kept a half-open connection"
        assert closed_after < 1 + 10, f"closed only after {closed_after:.1f}s"
        await wait_for(lambda: open_fds(process.pid) <= before + 2, timeout=10)
        health = await http.get(f"{url}/health")
        assert health.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_sessions_of_two_keys_are_stored_apart_and_listed_with_their_owner(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    store = tmp_path / "sessions.db"
    api_keys = ["sk-plain-key", {"name": "alice", "key_env": "ALICE_KEY"}]
    http = {"enabled": True, "port": 0, "api_keys": api_keys}
    settings = write_settings(
        tmp_path / "s.toml",
        settings_for(
            fake_openai.url,
            logging={"level": "INFO"},
            platforms={"http": http},
            store={"path": str(store)},
        ),
    )
    async with (
        hermes_run(settings, ALICE_KEY="sk-alice-key") as (process, url),
        httpx2.AsyncClient(timeout=60) as http,
    ):
        for key in ("sk-plain-key", "sk-alice-key", "sk-alice-key"):
            response = await http.post(
                f"{url}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {key}", "X-Hermes-Session": "same"},
            )
            assert response.headers["x-hermes-session"] == "same"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    listed = hermes("sessions", "list", settings=settings)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert "OWNER" in header.split()
    by_key = {row.split()[0]: row.split() for row in rows}
    plain = ApiKey.plain("sk-plain-key").name
    assert set(by_key) == {"http@alice:same", f"http@{plain}:same"}
    assert by_key["http@alice:same"][2] == "4"  # two turns: her own history only
    assert by_key[f"http@{plain}:same"][2] == "2"
    assert "alice" in by_key["http@alice:same"] and plain in by_key[f"http@{plain}:same"]
    assert "sk-" not in listed.stdout


async def test_a_client_tool_run_still_waiting_at_sigterm_shows_as_failed_not_unfinished(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    store = tmp_path / "sessions.db"
    settings = write_settings(
        tmp_path / "s.toml",
        settings_for(
            fake_openai.url,
            "tool-model",
            logging={"level": "INFO"},
            platforms={"http": {"enabled": True, "port": 0}},
            store={"path": str(store)},
        ),
    )
    weather = {"type": "function", "function": {"name": "get_weather"}}
    async with hermes_run(settings) as (process, url), httpx2.AsyncClient(timeout=60) as http:
        response = await http.post(
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "weather?"}], "tools": [weather]},
            headers={"X-Hermes-Session": "tools"},
        )
        assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
        process.send_signal(signal.SIGTERM)  # the client never sends the tool's result
        assert await asyncio.wait_for(process.wait(), 30) == 0
    shown = hermes("sessions", "show", "http:tools", settings=settings)
    assert shown.returncode == 0, shown.stderr
    assert "user: weather?  [FAILED: the run ended without an answer" in shown.stdout
    assert "UNANSWERED" not in shown.stdout
