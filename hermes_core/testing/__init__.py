"""Test kit for hermes-core and its plugins: a scripted OpenAI server and pytest fixtures.

Opt in from a ``conftest.py``::

    pytest_plugins = ["hermes_core.testing"]

Fixtures: ``fake_openai`` (a running :class:`FakeOpenAI`, emptied for each test),
``hermes_settings`` (settings pointing at it), ``plugin_host`` (built-ins only, no entry
points, so a suite is hermetic), ``register_plugin`` (register a plugin for one test),
``hook_recorder`` (every hook call, in order), ``make_gateway`` (a started gateway, stopped
after the test), ``serve_http`` (the ``http`` platform on a free port, over such a gateway),
``postgres`` (a throw-away PostgreSQL cluster for the test session, see
:mod:`hermes_core.testing.postgres`) and ``postgres_url`` (a new empty database on it, for one
test). End-to-end helpers: :func:`write_settings` (a settings file), installed plugins
(:mod:`hermes_core.testing.distributions`) and ``hermes-core`` processes
(:mod:`hermes_core.testing.processes`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import pytest
import pytest_asyncio
from loguru import logger

from hermes_core.gateway import Gateway
from hermes_core.hookexec import Impls, Kwargs, OnEnd, watch_calls
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict
from hermes_core.store import MemoryStore, Store
from hermes_core.testing.distributions import install_into, pip_install, write_dist
from hermes_core.testing.http_platform import ServeHttp, serve_http
from hermes_core.testing.openai_server import FakeOpenAI, RecordedRequest
from hermes_core.testing.postgres import PostgresCluster, PostgresMissing
from hermes_core.testing.processes import (
    cli_env,
    hermes_core,
    hermes_core_together,
    hermes_run_process,
    processes_mentioning,
    start_hermes_core,
)
from hermes_core.testing.settings_file import write_settings
from hermes_core.types import Message, Reply

__all__ = [
    "FakeOpenAI",
    "HookRecorder",
    "RecordedRequest",
    "ServeHttp",
    "cli_env",
    "hermes_core",
    "hermes_core_together",
    "hermes_run_process",
    "install_into",
    "message",
    "pip_install",
    "processes_mentioning",
    "send",
    "serve_http",
    "settings_for",
    "start_hermes_core",
    "write_dist",
    "write_settings",
]

PROVIDER = "local"


def settings_for(
    base_url: str,
    model: str = "ok-primary",
    fallbacks: list[str] | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """Settings whose provider ``local`` is the scripted server at ``base_url``.

    ``model`` and ``fallbacks`` are bare scripted model names (``"bad-primary"``); each keyword
    argument is a settings section merged over the defaults, e.g. ``cache={"max_agents": 2}``.
    """
    settings: dict[str, Any] = {
        "agent": {
            "model": f"{PROVIDER}:{model}",
            "fallbacks": [f"{PROVIDER}:{name}" for name in fallbacks or []],
        },
        "providers": {PROVIDER: {"base_url": base_url, "max_retries": 0, "timeout_s": 10}},
    }
    for section, values in sections.items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


def message(text: str, session_key: str = "test:1", platform: str = "test") -> Message:
    """An inbound message from user ``tester``."""
    return Message(text=text, platform=platform, session_key=session_key, user_id="tester")


@dataclass
class HookCall:
    """One hook call: its name, its arguments, and (once it has ended) its outcome."""

    hook: str
    kwargs: dict[str, Any]
    outcome: pluggy.Result[Any] | None = None


@dataclass
class HookRecorder:
    """Every hook call of a plugin manager, in call order, seen through pluggy's hook-call
    monitoring: it is no plugin, so it never changes an outcome or the implementations list.

    ``post_run``'s ``result`` is copied when the call starts, as the policies saw it.
    """

    calls: list[HookCall] = field(default_factory=list)

    def attach(self, pm: pluggy.PluginManager) -> Callable[[], None]:
        """Start recording ``pm``'s hook calls; returns the function that stops it."""

        def started(hook: str, impls: Impls, kwargs: Kwargs) -> OnEnd:
            values = dict(kwargs)
            if hook == "post_run":
                values["result"] = dict(values["result"])
            call = HookCall(hook, values)
            self.calls.append(call)

            def ended(outcome: pluggy.Result[Any]) -> None:
                call.outcome = outcome

            return ended

        return watch_calls(pm, started)

    def names(self) -> list[str]:
        return [call.hook for call in self.calls]

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [call.kwargs for call in self.calls if call.hook == hook]


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The scripted OpenAI server, its recorded requests cleared for this test."""
    _fake_openai_server.clear()
    return _fake_openai_server


@pytest.fixture
def hermes_settings(fake_openai: FakeOpenAI) -> dict[str, Any]:
    """Settings with primary ``local:ok-primary`` served by ``fake_openai``; edit freely."""
    return settings_for(fake_openai.url)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the whole test session; the test is skipped (saying why) only
    when the PostgreSQL binaries are not installed."""
    try:
        cluster = PostgresCluster()
    except PostgresMissing as missing:
        pytest.skip(str(missing))
    with cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> str:
    """``postgresql://…`` of a new empty database (password in the URL) for this test."""
    return postgres.url(postgres.create_database())


@pytest.fixture
def plugin_host() -> PluginHost:
    """A plugin host with the built-ins and no entry-point plugins."""
    host = PluginHost()
    host.load(entry_points=False)
    return host


@pytest.fixture
def register_plugin(plugin_host: PluginHost) -> Iterator[Callable[..., object]]:
    """``register_plugin(plugin, name=None)`` registers a plugin on ``plugin_host`` for one test."""
    added: list[str] = []

    def register(plugin: object, name: str | None = None) -> object:
        plugin_name = name or f"test-plugin-{len(added)}"
        plugin_host.register(plugin, plugin_name)
        added.append(plugin_name)
        return plugin

    yield register
    for plugin_name in added:
        plugin_host.pm.unregister(name=plugin_name)


@pytest.fixture
def hook_recorder(plugin_host: PluginHost) -> Iterator[HookRecorder]:
    """A :class:`HookRecorder` of every hook call on ``plugin_host``."""
    recorder = HookRecorder()
    detach = recorder.attach(plugin_host.pm)
    yield recorder
    detach()


@pytest.fixture
def hermetic_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh user data dir for the test: a ``hermes-core`` process started without
    ``store.path`` keeps its sessions there, never in the real one, nor across tests. Opt in
    per test, or for a whole suite with an autouse fixture in its ``conftest.py``."""
    home = tmp_path_factory.mktemp("data-home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


@contextlib.contextmanager
def captured_logs(level: str) -> Iterator[list[str]]:
    """The messages hermes-core logs at ``level`` or above inside the ``with`` block (its
    logger is enabled for that time)."""
    messages: list[str] = []
    logger.enable("hermes_core")
    sink = logger.add(lambda message: messages.append(message.record["message"]), level=level)
    try:
        yield messages
    finally:
        logger.remove(sink)
        logger.disable("hermes_core")


@pytest.fixture
def errors_logged() -> Iterator[list[str]]:
    """What hermes-core logs at ERROR or above during the test."""
    with captured_logs("ERROR") as messages:
        yield messages


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """What hermes-core logs at WARNING or above during the test."""
    with captured_logs("WARNING") as messages:
        yield messages


@pytest_asyncio.fixture
async def make_gateway(
    plugin_host: PluginHost, hermes_settings: dict[str, Any]
) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """``await make_gateway(settings=None, store=None)``: a started gateway over
    ``plugin_host``, keeping transcripts in a fresh :class:`MemoryStore` unless given ``store``."""
    gateways: list[Gateway] = []

    async def make(settings: dict[str, Any] | None = None, store: Store | None = None) -> Gateway:
        gateway = Gateway(
            config_from_dict(settings or hermes_settings),
            plugin_host,
            store=store if store is not None else MemoryStore(),
        )
        await gateway.start()
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in reversed(gateways):
        await gateway.stop()


async def send(gateway: Gateway, text: str, session_key: str = "test:1") -> Reply:
    """Hand one message to ``gateway`` and return its reply."""
    return await gateway.handle(message(text, session_key))
