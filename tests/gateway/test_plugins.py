"""Plugins from real entry points: broken plugins and load filtering.

Every third-party plugin here is an installed distribution found by ``importlib.metadata``: a
minimal ``.dist-info`` written by :func:`helpers_dist.write_dist`. Replacing a built-in with a
real package is tested with ``contrib/hermes-evict-always``, in its own ``tests/``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_dist import (
    BROKEN_IMPORT,
    IMPORT_MARKER,
    MISSPELLED_HOOK,
    RAISING_POST_RUN,
    WRAPPER_HOOK,
    imported,
)

from hermes_core.gateway import Gateway
from hermes_core.manager import PluginHost
from hermes_core.settings import config_from_dict, load_config
from hermes_core.store import MemoryStore
from hermes_core.testing import FakeOpenAI, HookRecorder, send, settings_for, write_dist

pytestmark = pytest.mark.usefixtures("no_hermes_env")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on ``sys.path`` for :func:`write_dist`; its modules are forgotten after."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name, module in list(sys.modules.items()):
        if str(site) in str(getattr(module, "__file__", None) or ""):
            del sys.modules[name]


def loaded(monkeypatch: pytest.MonkeyPatch, *names: str) -> PluginHost:
    """A host with the built-ins and only the entry-point plugins ``names``."""
    monkeypatch.setenv("HERMES_LOAD_PLUGINS", ",".join(names))
    host = PluginHost()
    host.load()
    return host


def record(host: PluginHost, name: str) -> dict[str, Any]:
    return next(r for r in host.describe() if r["name"] == name)


# --- broken plugins ----------------------------------------------------------------------------


def test_a_plugin_whose_import_raises_is_failed_and_the_rest_load(
    site: Path, warnings_logged: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = write_dist(site, "broken-import", BROKEN_IMPORT)
    fine = write_dist(site, "fine-plugin", IMPORT_MARKER)

    host = loaded(monkeypatch, broken, fine)

    assert record(host, broken) == {
        "name": "broken_import",
        "dist": "broken-import",
        "version": "1.0.0",
        "hooks": [],
        "builtin": False,
        "status": "failed",
        "error": "RuntimeError: broken on purpose at import",
    }
    assert record(host, fine)["status"] == "loaded"
    assert record(host, "eviction")["status"] == "loaded"
    [line] = [line for line in warnings_logged if broken in line]
    assert "broken on purpose at import" in line
    assert 'plugins.disabled = ["broken_import"]' in line


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (MISSPELLED_HOOK, "unknown hook 'post_rum'"),
        (WRAPPER_HOOK, "old-style hookwrapper=True is not supported"),
    ],
    ids=["misspelled hook", "wrapper"],
)
def test_a_plugin_that_cannot_register_is_failed_and_the_rest_load(
    site: Path, source: str, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write_dist(site, "bad-plugin", source)
    fine = write_dist(site, "fine-plugin", IMPORT_MARKER)

    host = loaded(monkeypatch, bad, fine)

    assert record(host, bad)["status"] == "failed"
    assert error in record(host, bad)["error"]
    assert not host.pm.is_registered(sys.modules[bad])  # nothing half-registered
    assert host.pm.hook.post_run.get_hookimpls()  # the built-ins' still are
    assert record(host, fine)["status"] == "loaded"


async def test_a_plugin_whose_post_run_raises_does_not_cost_the_user_the_answer(
    site: Path, fake_openai: FakeOpenAI, warnings_logged: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raiser = write_dist(site, "raising-plugin", RAISING_POST_RUN)
    monkeypatch.setenv("HERMES_LOAD_PLUGINS", raiser)
    config = config_from_dict(settings_for(fake_openai.url, "bad-primary", ["ok-b"]))
    gateway = Gateway(config, store=MemoryStore())
    recorder = HookRecorder()
    recorder.attach(gateway.host.pm)

    async with gateway:
        reply = await send(gateway, "hello")

    assert reply.text == "[ok-b] hello (user messages: 1)"
    # The built-in eviction, trylast, still ran after the raising plugin.
    assert [e["reason"] for e in recorder.of("on_evict")] == ["fallback_succeeded"]
    [line] = [line for line in warnings_logged if "post_run exploded" in line]
    assert f"plugin '{raiser}' raised in post_run" in line


# --- choosing what loads, before import --------------------------------------------------------


def test_plugins_disabled_in_the_settings_file_is_never_imported(
    site: Path, tmp_path: Path
) -> None:
    name = write_dist(site, "marker-plugin", IMPORT_MARKER)
    settings = tmp_path / "settings.toml"
    settings.write_text(
        '[agent]\nmodel = "local:ok"\n[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\n'
        f'[plugins]\ndisabled = ["{name}"]\n'
    )

    host = Gateway(load_config(settings)).host

    assert not imported(site, name)
    assert record(host, name)["status"] == "disabled"
    assert record(host, name)["dist"] == "marker-plugin"


def test_plugins_disabled_from_the_environment_is_never_imported(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_dist(site, "marker-plugin", IMPORT_MARKER)
    # Settings given entirely by the environment, as in a container; no settings file.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERMES_AGENT__MODEL", "local:ok")
    monkeypatch.setenv("HERMES_PROVIDERS__LOCAL__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("HERMES_PLUGINS__DISABLED", f'["{name}", "circuit_breaker"]')

    host = Gateway(load_config()).host

    assert not imported(site, name)
    assert record(host, name)["status"] == "disabled"
    assert record(host, "circuit_breaker")["status"] == "disabled"
    assert record(host, "eviction")["status"] == "loaded"


@pytest.mark.parametrize(
    ("load_plugins", "expect_imported"),
    [
        (None, {"plugin_a": True, "plugin_b": True}),
        ("", {"plugin_a": False, "plugin_b": False}),
        ("plugin_a", {"plugin_a": True, "plugin_b": False}),
        (" plugin_b , nonexistent", {"plugin_a": False, "plugin_b": True}),
    ],
    ids=["unset", "empty", "one", "spaces"],
)
def test_hermes_load_plugins_limits_third_party_plugins_before_import(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    load_plugins: str | None,
    expect_imported: dict[str, bool],
) -> None:
    for name in expect_imported:
        write_dist(site, name.replace("_", "-"), IMPORT_MARKER)
    if load_plugins is not None:
        monkeypatch.setenv("HERMES_LOAD_PLUGINS", load_plugins)

    host = PluginHost()
    host.load()

    assert {name: imported(site, name) for name in expect_imported} == expect_imported
    for name, was_imported in expect_imported.items():
        assert record(host, name)["status"] == ("loaded" if was_imported else "disabled")
    assert record(host, "eviction")["status"] == "loaded"  # built-ins are not limited


@pytest.mark.parametrize("disabled", [[], ["eviction"]], ids=["builtin loaded", "disabled"])
def test_an_entry_point_named_like_a_builtin_is_failed_and_the_builtin_kept(
    site: Path, monkeypatch: pytest.MonkeyPatch, disabled: list[str]
) -> None:
    write_dist(site, "my-eviction", IMPORT_MARKER, entry_point="eviction")
    monkeypatch.setenv("HERMES_LOAD_PLUGINS", "eviction")

    host = PluginHost()
    host.load(disabled)

    records = [r for r in host.describe() if r["name"] == "eviction"]
    assert [(r["dist"], r["builtin"], r["status"]) for r in records] == [
        ("hermes-core", True, "disabled" if disabled else "loaded"),
        ("my-eviction", False, "failed"),
    ]
    assert "already taken by the built-in plugin" in records[1]["error"]
    assert not imported(site, "my_eviction")


def test_a_name_no_plugin_has_is_warned_about_with_the_names_that_exist(
    site: Path, warnings_logged: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dist(site, "marker-plugin", IMPORT_MARKER)
    monkeypatch.setenv("HERMES_LOAD_PLUGINS", "marker_plugin,markr_plugin")

    PluginHost().load(["evicton"])

    [disabled] = [line for line in warnings_logged if "evicton" in line]
    assert "plugins.disabled names 'evicton', but no plugin has that name" in disabled
    assert "eviction" in disabled.split("(plugins: ")[1]
    [allowed] = [line for line in warnings_logged if "markr_plugin" in line]
    assert "HERMES_LOAD_PLUGINS names 'markr_plugin'" in allowed
    assert "marker_plugin" in allowed.split("(plugins: ")[1]


def test_two_distributions_claiming_one_name_the_second_is_failed(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dist(site, "first-dist", IMPORT_MARKER, entry_point="shared")
    second_site = tmp_path / "second-site"
    write_dist(second_site, "second-dist", IMPORT_MARKER, entry_point="shared")
    # The same distribution visible twice (say, installed and on PYTHONPATH) is one plugin.
    third_site = tmp_path / "third-site"
    write_dist(third_site, "first-dist", IMPORT_MARKER, entry_point="shared")
    monkeypatch.syspath_prepend(str(third_site))
    monkeypatch.syspath_prepend(str(second_site))
    monkeypatch.syspath_prepend(str(site))

    host = loaded(monkeypatch, "shared")

    records = [r for r in host.describe() if r["name"] == "shared"]
    assert [(r["dist"], r["status"]) for r in records] == [
        ("first-dist", "loaded"),
        ("second-dist", "failed"),
    ]
    assert "already taken by the plugin from first-dist" in records[1]["error"]
    assert not imported(second_site, "second_dist")
