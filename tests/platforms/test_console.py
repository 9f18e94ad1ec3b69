"""The console platform: in process over in-memory pipes, and as a real ``hermes-core run``."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_console import piped_console

from hermes_core.plugins.console import ConsolePlatform
from hermes_core.testing import FakeOpenAI, settings_for, write_settings

# --- in process ----------------------------------------------------------------------------


async def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``condition()`` without blocking the loop; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def serve_console(gateway, text: str, **settings: object) -> str:
    """Feed ``text`` to a console platform on ``gateway``; return what it wrote."""
    out = io.StringIO()
    console = ConsolePlatform(gateway, settings, stdin=io.StringIO(text), stdout=out)
    await console.start()
    await asyncio.wait_for(console.wait_closed(), 10)
    await console.stop()
    return out.getvalue()


async def test_lines_in_replies_out_in_order(make_gateway, fake_openai: FakeOpenAI) -> None:
    gateway = await make_gateway()
    output = await serve_console(gateway, "one\n\n   \ntwo\n/model local:ok-x\nthree")
    assert output.splitlines() == [
        "[ok-primary] one (user messages: 1)",
        "[ok-primary] two (user messages: 2)",
        "Model set to local:ok-x for this session.",
        "[ok-x] three (user messages: 3)",
    ]
    # Blank lines are not messages; the session is the console's.
    assert len(fake_openai.snapshot()) == 3
    assert "console:local" in gateway.cache


async def test_prompt_only_when_asked_or_interactive(make_gateway) -> None:
    gateway = await make_gateway()
    assert ">" not in await serve_console(gateway, "hi\n")
    prompted = await serve_console(gateway, "hi\n", prompt=True)
    assert prompted.startswith("> [ok-primary] hi")
    assert prompted.endswith("> ")


async def test_stop_finishes_the_line_in_flight_and_drops_the_rest(
    make_gateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await make_gateway()
    async with piped_console(gateway) as piped:
        # Input stays open: only stop() can end this console.
        piped.type("/model local:slow-0.5-x\nin flight\nnot started\n")
        await wait_for(lambda: fake_openai.requests_for("slow-"))
        await asyncio.wait_for(piped.console.stop(), 10)
        assert piped.out.getvalue().splitlines() == [
            "Model set to local:slow-0.5-x for this session.",
            "[slow-0.5-x] in flight (user messages: 1)",
        ]
        assert len(fake_openai.snapshot()) == 1
        await asyncio.wait_for(piped.console.wait_closed(), 1)
        piped.writer.close()  # end of input lets the reader thread finish
        reader = [t for t in threading.enumerate() if t.name == "hermes-core console reader"]
        await asyncio.to_thread(lambda: [t.join(10) for t in reader])


# --- as a process ------------------------------------------------------------------------


def settings_file(tmp_path: Path, url: str) -> Path:
    settings = settings_for(url, logging={"level": "DEBUG"})
    return write_settings(tmp_path / "settings.toml", settings)


def start_run(settings: Path) -> subprocess.Popen[str]:
    # HERMES_LOAD_PLUGINS="": whatever else is installed, only the built-ins load.
    env = {**os.environ, "HERMES_LOAD_PLUGINS": ""}
    env.pop("HERMES_SETTINGS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "hermes_core", "run", "--settings", str(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``condition()`` (blocking) until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_run_answers_stdin_and_exits_zero_at_eof(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    proc = start_run(settings_file(tmp_path, fake_openai.url))
    # The last message goes to a slow model, so a run is still in flight at end of input.
    stdout, stderr = proc.communicate("hello\n/model local:slow-0.5-x\nlast one\n", timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.splitlines() == [
        "[ok-primary] hello (user messages: 1)",
        "Model set to local:slow-0.5-x for this session.",
        "[slow-0.5-x] last one (user messages: 2)",
    ]
    # Logs went to stderr, and only there.
    assert "platform console started" in stderr
    assert "Traceback" not in stderr


def test_sigterm_lets_the_run_in_flight_reply_and_exits_zero(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    proc = start_run(settings_file(tmp_path, fake_openai.url))
    assert proc.stdin is not None
    try:
        proc.stdin.write("/model local:slow-1-x\nwait for me\n")
        proc.stdin.flush()
        wait_until(lambda: fake_openai.requests_for("slow-1-x") or proc.poll() is not None)
        assert proc.poll() is None, "hermes-core run exited early"
        proc.send_signal(signal.SIGTERM)
        # stdin stays open: the exit must come from the signal, not from end of input.
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert stdout.splitlines() == [
        "Model set to local:slow-1-x for this session.",
        "[slow-1-x] wait for me (user messages: 1)",
    ], stderr
    assert "signal received" in stderr


@pytest.mark.parametrize("bad", ['model = "no-colon"', 'model = "nowhere:x"'])
def test_bad_settings_exit_2_with_one_line(tmp_path: Path, bad: str) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[agent]\n{bad}\n[providers.local]\nbase_url = "http://x/v1"\n')
    proc = start_run(settings)
    stdout, stderr = proc.communicate("", timeout=60)
    assert proc.returncode == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "agent.model" in stderr
