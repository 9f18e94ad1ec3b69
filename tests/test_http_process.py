"""The ``http`` platform in a real ``hermes-core run`` process: signals and start-up refusal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
from helpers_dist import cli_env, hermes_run_process

from hermes_core.testing import FakeOpenAI

LISTENING = re.compile(r"http platform listening on (http://\S+)")


def write_settings(path: Path, base_url: str, model: str, http: str) -> Path:
    path.write_text(
        f"""
[logging]
level = "INFO"

[agent]
model = "local:{model}"

[providers.local]
base_url = "{base_url}"
max_retries = 0

[platforms.http]
enabled = true
{http}
"""
    )
    return path


def env() -> dict[str, str]:
    # No third-party plugins: the run must not depend on what else is installed.
    return cli_env(HERMES_LOAD_PLUGINS="")


@contextlib.asynccontextmanager
async def hermes_run(settings: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A ``hermes-core run`` process in its own process group, and the URL it listens on.
    Killed (whole group) if the test leaves it running."""
    async with hermes_run_process(settings, env()) as process:
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
    settings = write_settings(tmp_path / "s.toml", fake_openai.url, "slow-2-primary", "port = 0")
    async with hermes_run(settings) as (process, url), httpx2.AsyncClient(timeout=60) as http:
        body = {"model": "any", "messages": [{"role": "user", "content": "in flight"}]}
        request = asyncio.create_task(http.post(f"{url}/v1/chat/completions", json=body))
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
    settings = write_settings(tmp_path / "s.toml", fake_openai.url, "ok-primary", "port = 0")
    async with hermes_run(settings) as (process, url), httpx2.AsyncClient(timeout=60) as http:
        body = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}
        assert (await http.post(f"{url}/v1/chat/completions", json=body)).status_code == 200
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    assert group_is_gone(process.pid)


def test_non_loopback_host_without_api_keys_exits_2_with_one_line(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    settings = write_settings(
        tmp_path / "s.toml", fake_openai.url, "ok-primary", 'host = "0.0.0.0"\nport = 0'
    )
    text = settings.read_text().replace('level = "INFO"', 'level = "WARNING"')
    settings.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "hermes_core", "run", "--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env(),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("hermes-core: error: platforms.http.host: ")
    assert "0.0.0.0 without API keys" in lines[0]
