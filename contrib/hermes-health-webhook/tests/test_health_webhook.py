"""contrib/hermes-health-webhook against a real local HTTP server that records each post."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hermes_core.errors import ConfigError
from hermes_core.testing import FakeOpenAI, send, settings_for

SOURCE = Path(__file__).resolve().parents[1]


class Receiver(ThreadingHTTPServer):
    """Records each posted JSON body, answering after ``delay_s``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.posts: list[dict[str, Any]] = []
        self.delay_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay_s)
        self.server.posts.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the posts, not the access log."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def webhook_plugin(monkeypatch: pytest.MonkeyPatch, register_plugin: Any) -> Any:
    """The plugin, imported from its source tree (no entry point leaks into other tests)."""
    monkeypatch.syspath_prepend(str(SOURCE))
    import hermes_health_webhook

    return register_plugin(hermes_health_webhook, "health_webhook")


def webhook_settings(fake_openai: FakeOpenAI, url: str) -> dict[str, Any]:
    settings = settings_for(fake_openai.url, "notfound-x", ["ok-fallback"])
    settings["providers"]["local"]["breaker"] = {"cooldown_s": 0.1}
    settings["health_webhook"] = {"url": url, "timeout_s": 2}
    return settings


async def test_each_transition_is_posted_in_order_without_delaying_runs(
    make_gateway, fake_openai: FakeOpenAI, receiver: Receiver, webhook_plugin: Any
) -> None:
    # The process's first run pays one-off costs (imports, the first connection): not timed.
    await send(await make_gateway(settings_for(fake_openai.url)), "warm up")
    receiver.delay_s = 0.3  # a slow webhook
    gateway = await make_gateway(webhook_settings(fake_openai, receiver.url))
    first = (await send(gateway, "one")).result
    await asyncio.sleep(0.15)
    second = (await send(gateway, "two")).result  # the probe: 404 again
    assert first is not None and second is not None
    assert first["duration_s"] < 0.25 and second["duration_s"] < 0.25, "runs never wait on it"
    await gateway.stop()  # what is queued still goes

    assert [(p["provider"], p["model"], p["state"]) for p in receiver.posts] == [
        ("local", "notfound-x", "open"),
        ("local", "notfound-x", "half_open"),
        ("local", "notfound-x", "open"),
    ]
    assert set(receiver.posts[0]) == {"provider", "model", "state", "reason", "retry_at"}
    assert "HTTP 404" in receiver.posts[0]["reason"]
    assert receiver.posts[0]["retry_at"] > time.time() - 5


async def test_an_unreachable_webhook_is_logged_and_runs_go_on(
    make_gateway,
    fake_openai: FakeOpenAI,
    webhook_plugin: Any,
    warnings_logged: list[str],
    unused_tcp_port: int,
) -> None:
    gateway = await make_gateway(
        webhook_settings(fake_openai, f"http://127.0.0.1:{unused_tcp_port}/")
    )
    reply = await send(gateway, "one")
    assert reply.result is not None and reply.result["failed"] is False
    await gateway.stop()
    assert any("health webhook: cannot post" in line for line in warnings_logged)


async def test_a_bad_timeout_is_refused_at_start_up(
    make_gateway, fake_openai: FakeOpenAI, webhook_plugin: Any
) -> None:
    settings = webhook_settings(fake_openai, "http://127.0.0.1:9/")
    settings["health_webhook"]["timeout_s"] = 0
    with pytest.raises(ConfigError, match=r"health_webhook\.timeout_s: must be > 0"):
        await make_gateway(settings)
