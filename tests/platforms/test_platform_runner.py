"""``hermes-core run`` with several platforms: one that cannot start does not stop the others."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx2

from hermes_core.testing import (
    FakeOpenAI,
    cli_env,
    hermes_run_process,
    settings_for,
    write_dist,
    write_settings,
)

BROKEN_PLATFORM = """
from hermes_core import hookimpl


class Broken:
    def __init__(self, gateway, settings):
        pass

    async def start(self):
        raise RuntimeError("cannot reach the chat service")

    async def stop(self):
        pass

    async def wait_closed(self):
        pass


@hookimpl
def register_platforms(register):
    register("broken", Broken)
"""


async def test_a_platform_that_fails_to_start_leaves_the_others_running(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    site = tmp_path / "site"
    write_dist(site, "hermes-broken-platform", BROKEN_PLATFORM, entry_point="broken")
    platforms = {"broken": {"enabled": True}, "http": {"enabled": True, "port": 0}}
    settings = write_settings(
        tmp_path / "settings.toml", settings_for(fake_openai.url, platforms=platforms)
    )
    env = cli_env(site, XDG_DATA_HOME=str(tmp_path / "data"))
    log: list[str] = []
    async with hermes_run_process(settings, env) as process:
        assert process.stderr is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            assert line, "hermes-core run ended early:\n" + "".join(log)
            log.append(line)
            if match := re.search(r"listening on (http://\S+)", line):
                url = match.group(1)
        async with httpx2.AsyncClient(base_url=url, timeout=30) as http:
            body = {"messages": [{"role": "user", "content": "still here?"}]}
            response = await http.post("/v1/chat/completions", json=body)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        log.append((await process.stderr.read()).decode())
    text = "".join(log)
    assert code == 0, text
    assert response.json()["choices"][0]["message"]["content"].startswith("[ok-primary]")
    assert "platform broken failed to start: RuntimeError: cannot reach the chat service" in text
    assert "Traceback" not in text
