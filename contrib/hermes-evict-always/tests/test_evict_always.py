"""The ``evict_always`` plugin pip-installed and loaded from its entry point, in place of the
built-in ``eviction``: the same failing scenario evicts after every run with it, never without.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from hermes_core.gateway import Gateway
from hermes_core.settings import config_from_dict
from hermes_core.store import MemoryStore
from hermes_core.testing import FakeOpenAI, HookRecorder, pip_install, send, settings_for

pytestmark = pytest.mark.slow  # pip installs the package

SOURCE = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def plugins_from(no_hermes_env: None, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``HERMES_`` settings from the developer's shell; the test says which plugins load."""
    return monkeypatch


@pytest.fixture
def evict_always(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package installed and on ``sys.path``, where ``importlib.metadata`` finds it."""
    target = pip_install(SOURCE, tmp_path_factory)
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()
    return target


async def seed_scenario(gateway: Gateway, messages: int) -> tuple[list[str], list[object]]:
    """Send ``messages`` messages that fail on the primary and the fallback; return the
    eviction reasons seen and the cached agent after each message (None: evicted)."""
    recorder = HookRecorder()
    recorder.attach(gateway.host.pm)
    await gateway.start()
    try:
        agents = []
        for index in range(messages):
            reply = await send(gateway, f"message {index}")
            assert reply.result is not None
            assert reply.result["error_kind"] == "non_retryable"
            agents.append(gateway.cache.get("test:1"))
        return [e["reason"] for e in recorder.of("on_evict")], agents
    finally:
        await gateway.stop()


def seed_settings(fake_openai: FakeOpenAI, **sections: dict[str, Any]) -> dict[str, Any]:
    # A high threshold keeps the circuit breaker's own eviction out of the comparison.
    return settings_for(
        fake_openai.url,
        "bad-primary",
        ["bad-fallback"],
        circuit_breaker={"threshold": 100},
        **sections,
    )


def record(gateway: Gateway, name: str) -> dict[str, Any]:
    return next(r for r in gateway.host.describe() if r["name"] == name)


async def test_evict_always_plugin_replaces_the_builtin_eviction(
    evict_always: Path, fake_openai: FakeOpenAI, plugins_from: pytest.MonkeyPatch
) -> None:
    plugins_from.setenv("HERMES_LOAD_PLUGINS", "evict_always")
    config = config_from_dict(seed_settings(fake_openai, plugins={"disabled": ["eviction"]}))
    # Plugins come from the entry points and the settings, as in `hermes-core run`.
    gateway = Gateway(config, store=MemoryStore())

    reasons, agents = await seed_scenario(gateway, 3)

    assert reasons == ["evict_always"] * 3
    assert agents == [None] * 3
    assert record(gateway, "evict_always") == {
        "name": "evict_always",
        "dist": "hermes-evict-always",
        "version": "0.1.0",
        "hooks": ["post_run"],
        "builtin": False,
        "status": "loaded",
    }
    assert record(gateway, "eviction")["status"] == "disabled"


async def test_builtin_eviction_keeps_the_agent_in_the_same_scenario(
    fake_openai: FakeOpenAI, plugins_from: pytest.MonkeyPatch
) -> None:
    plugins_from.setenv("HERMES_LOAD_PLUGINS", "")
    gateway = Gateway(config_from_dict(seed_settings(fake_openai)), store=MemoryStore())

    reasons, agents = await seed_scenario(gateway, 3)

    assert reasons == []
    assert agents[0] is not None
    assert agents == [agents[0]] * 3
