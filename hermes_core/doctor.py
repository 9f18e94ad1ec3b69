"""``hermes-core doctor``: check what a start depends on, one :class:`CheckResult` per item.

The checks, in report order:

- **settings**: the files and ``HERMES_`` variables load and validate (as ``load_config``);
- **plugins**: each plugin's load status (a failed one says how to disable it);
- **providers**: per ``providers.<name>``, where its key comes from, whether
  ``GET {base_url}/models`` answers, and whether the models ``agent.model`` and
  ``agent.fallbacks`` name are listed (when the endpoint lists models at all);
- **MCP servers**: each enabled server is started once and stopped, exactly as
  ``hermes-core mcp test`` does;
- **platforms**: each enabled platform is installed (as ``Gateway.configure`` plans them), its
  adapter accepts its settings, and the adapter's own ``check()`` passes, when it has one (the
  ``http`` platform's binds its host and port);
- **store**: the SQLite file opens read-only, its schema is one this version reads, and
  ``PRAGMA integrity_check`` passes. Nothing is ever created or written.

Every check returns results instead of raising, so one broken item never hides the others.
Network and MCP checks run concurrently. Checks that need valid settings are reported as
skipped (``ok=None``) when the settings are invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_core.doctor_providers import check_provider, configured_models, health_result
from hermes_core.doctor_results import (
    CheckResult,
    Report,
    failed,
    one_line,
    passed,
    skipped,
)
from hermes_core.errors import EXIT_CONFIG, ConfigError, HermesError
from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.settings import PoolSettings
from hermes_core.pg_schema import shown
from hermes_core.pg_store import NoStore, PostgresStore
from hermes_core.platform_settings import build_platform
from hermes_core.platforms import PlatformCheck
from hermes_core.providers import ProviderTypeError
from hermes_core.redaction import register_settings
from hermes_core.settings import SETTINGS_FILE_ENV, Config, build_config, read_settings
from hermes_core.settings.loading import as_dict
from hermes_core.store_config import store_password

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.manager import PluginHost

SKIPPED_NEEDS_SETTINGS = "skipped: needs valid settings"

__all__ = ["EXIT_CONFIG", "CheckResult", "Report", "check_provider", "run_checks"]


# --- settings ------------------------------------------------------------------------------


def check_settings(
    path: Path | str | None,
) -> tuple[CheckResult, dict[str, Any] | None, Config | None]:
    """Load and validate the settings.

    Returns the result, the raw settings (None when even they could not be read) and the
    validated :class:`Config` (None when validation failed). The raw settings are enough to
    load the plugins, so their check still runs when only cross-references are wrong.
    """
    try:
        dyn, source = read_settings(path)
    except ConfigError as error:
        return failed("settings", str(error), _settings_fix(error)), None, None
    try:
        config = build_config(dyn, source)
    except ConfigError as error:
        return failed("settings", str(error), _settings_fix(error)), as_dict(dyn), None
    return passed("settings", f"valid ({source or 'defaults and environment'})"), config.raw, config


def _settings_fix(error: ConfigError) -> str:
    if error.key.endswith(".api_key_env"):
        return "export that variable (the provider's API key), or correct the variable's name"
    if error.key in ("--settings", SETTINGS_FILE_ENV):
        return "name an existing settings file"
    return f"correct {error.key or 'the settings'} (docs/configuration.md lists every key)"


# --- plugins -------------------------------------------------------------------------------


def check_plugins(host: PluginHost) -> list[CheckResult]:
    """One result per plugin in ``host``'s load record."""
    results = []
    for record in host.records:
        check = f"plugin {record.name}"
        origin = "built-in" if record.builtin else f"{record.dist or '?'} {record.version or ''}"
        if record.status == "loaded":
            results.append(passed(check, f"loaded ({origin.strip()})"))
        elif record.status == "disabled":
            why = (
                "plugins.disabled" if record.builtin else "plugins.disabled or HERMES_LOAD_PLUGINS"
            )
            results.append(passed(check, f"not loaded ({origin.strip()}): {why}"))
        elif sum(other.name == record.name for other in host.records) > 1:
            # Its name belongs to another plugin: disabling the name would disable that one.
            fix = f"uninstall {record.dist or 'its distribution'} or rename its entry point"
            results.append(failed(check, record.error or "failed", fix))
        else:
            fix = (
                f'disable it with plugins.disabled = ["{record.name}"] or HERMES_LOAD_PLUGINS= '
                "(no third-party plugins), or upgrade/uninstall it"
            )
            results.append(failed(check, record.error or "failed", fix))
    return results


# --- MCP servers ---------------------------------------------------------------------------


def _first_per_check(rows: Iterable[CheckResult]) -> list[CheckResult]:
    """One row per checked item: its first problem (a table may have several)."""
    return list({row.check: row for row in reversed(list(rows))}.values())[::-1]


def _mcp_error_result(error: ConfigError) -> CheckResult:
    """The row of an MCP setting or spec that does not validate."""
    parts = error.key.split(".")
    if parts[:2] == ["mcp", "servers"] and len(parts) > 2:
        fix = f"correct mcp.servers.{parts[2]} (docs/mcp.md)"
        return failed(f"mcp {parts[2]}", str(error), fix)
    if error.key.startswith("mcp."):
        return failed("mcp settings", str(error), "correct it (docs/mcp.md)")
    return failed("mcp plugins", str(error), "fix or disable the plugin named above")


async def check_mcp_server(spec: MCPServerSpec, settings: PoolSettings) -> CheckResult:
    """Start the server once (as ``hermes-core mcp test``), report its tools or why not."""
    from hermes_core.mcp.probe import probe_server

    check = f"mcp {spec.name}"
    if not spec.enabled:
        return passed(check, "disabled (enabled = false); not started")
    probe = await probe_server(spec, settings)
    if probe.ok:
        return passed(check, f"ready in {probe.ready_s:.2f}s, {len(probe.tools)} tool(s)")
    if spec.source != "settings":
        fix = (
            f"the server comes from plugin {spec.source}: fix it, or disable it with "
            f'plugins.disabled = ["{spec.source}"]'
        )
    elif spec.transport == "http":
        fix = f"check mcp.servers.{spec.name}.url and that the server is running"
    else:
        fix = (
            f"check mcp.servers.{spec.name}.command and args (run them by hand to see why), "
            "or set enabled = false"
        )
    return failed(check, probe.error or probe.state.value, fix)


# --- platforms -----------------------------------------------------------------------------


async def check_platforms(gateway: Gateway, errors: Sequence[ConfigError]) -> list[CheckResult]:
    """One row per platform with a settings problem (``errors`` from ``configure``), then per
    enabled one: its adapter builds (it checks the keys it reads) and its ``check()`` passes."""
    rows = []
    plan = gateway.platform_plan
    for error in errors:
        name = error.key.split(".")[1]
        if name in plan.missing:
            fix = f"install the plugin that provides it, or set platforms.{name}.enabled = false"
            rows.append(failed(f"platform {name}", error.problem, fix))
        else:
            rows.append(failed(f"platform {name}", str(error), f"correct {error.key}"))
    results = _first_per_check(rows)
    reported = {error.key.split(".")[1] for error in errors}
    for name in plan.names:
        check = f"platform {name}"
        if name in reported:
            continue
        try:
            platform = build_platform(gateway, name)  # built, never started
        except ConfigError as error:
            results.append(failed(check, str(error), f"correct {error.key or 'its settings'}"))
            continue
        except Exception as error:  # a third-party adapter's bug: report, do not crash
            detail = one_line(f"the adapter failed to build: {type(error).__name__}: {error}")
            results.append(failed(check, detail, f"check platforms.{name} or the plugin"))
            continue
        results.append(await _platform_check(check, name, platform))
    return results


async def _platform_check(check: str, name: str, platform: Any) -> CheckResult:
    probe = getattr(platform, "check", None)
    if probe is None:
        return passed(check, "ready")
    try:
        found = probe()
        outcome: PlatformCheck = await found if inspect.isawaitable(found) else found
    except Exception as error:  # a third-party adapter's bug: report, do not crash
        detail = one_line(f"its check() failed: {type(error).__name__}: {error}")
        return failed(check, detail, f"check platforms.{name} or the plugin")
    if outcome.problems:
        fix = f"correct platforms.{name}, or stop what is in its way"
        return failed(check, one_line("; ".join(outcome.problems)), fix)
    return passed(check, outcome.summary)


# --- store ---------------------------------------------------------------------------------


def check_store(config: Config) -> CheckResult:
    """Open the SQLite store read-only: known schema, integrity ok. Never creates the file."""
    from hermes_core.sqlite_store import SCHEMA_VERSION, check_store_file
    from hermes_core.store import MEMORY_PATH, default_store_path

    setting = str(config.get("store.path") or "")
    if setting == MEMORY_PATH:
        return passed("store", 'in memory (store.path = ":memory:"): transcripts are not kept')
    path = Path(setting).expanduser().resolve() if setting else default_store_path()
    if not path.exists():
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
            fix = "point store.path at a writable place, or fix the directory's permissions"
            return failed("store", f"{path} cannot be created: {parent} is not writable", fix)
        return passed("store", f"{path} will be created on first run")
    try:
        version = check_store_file(path)
    except ConfigError as error:  # not a store, another application's, or from a newer version
        return failed("store", error.problem, "point store.path at another file")
    fix = "restore it from a backup, or move it away (the next start creates a new store)"
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            problems = [
                str(row[0]) for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"
            ]
    except sqlite3.Error as error:  # damage bad enough that the check itself cannot finish
        problems = [str(error)]
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        detail = one_line(f"{path}: integrity check failed: {problems[0]}{more}")
        return failed("store", detail, fix)
    schema = (
        "current"
        if version == SCHEMA_VERSION
        else f"upgraded to {SCHEMA_VERSION} on the next start"
    )
    return passed("store", f"{path}: schema version {version} ({schema}), integrity ok")


async def check_postgres_store(config: Config) -> CheckResult:
    """Connect to the PostgreSQL store of ``store.url`` and read its schema version; never
    creates or migrates anything."""
    url = str(config.get("store.url"))
    try:
        store = PostgresStore(url, password=store_password(config), pool_size=2, migrate=False)
        await store.open()
    except NoStore:
        return passed("store", f"{shown(url)}: reachable; the store is created on first run")
    except ConfigError as error:
        fixes = "check store.url, store.password_env, and that the database server is running"
        if "schema version" in error.problem:
            fixes = "run hermes-core store migrate (or upgrade hermes-core)"
        return failed("store", one_line(error.problem), fixes)
    try:
        version = await store.schema_version()
    finally:
        await store.close()
    return passed("store", f"{shown(url)}: reachable, schema version {version} (current)")


# --- all of it -----------------------------------------------------------------------------


def _skip_rest(results: list[CheckResult], names: Sequence[str]) -> None:
    results.extend(skipped(name, SKIPPED_NEEDS_SETTINGS) for name in names)


async def run_checks(
    settings_path: Path | str | None = None, *, entry_points: bool = True
) -> Report:
    """Run every check against the settings at ``settings_path`` (default: as ``run``).

    ``entry_points=False`` loads only the built-in plugins (hermetic tests).
    """
    from hermes_core.gateway import Gateway
    from hermes_core.manager import PluginHost

    settings_result, raw, config = check_settings(settings_path)
    results = [settings_result]
    if raw is None:
        _skip_rest(results, ("plugins", "providers", "mcp servers", "platforms", "store"))
        return Report(results, settings_valid=False)
    register_settings(raw)
    host = PluginHost()
    # Names only: a non-string entry is a settings error already reported above.
    disabled = [name for name in raw["plugins"]["disabled"] if isinstance(name, str)]
    host.load(disabled, entry_points=entry_points)
    results += check_plugins(host)
    if config is None:
        _skip_rest(results, ("providers", "mcp servers", "platforms", "store"))
        return Report(results, settings_valid=False)

    gateway = Gateway(config, host)  # never started: it only lends its registries and hooks
    try:
        errors = await gateway.configure(collect_errors=True)
    except HermesError as error:  # a plugin's registration hook broke, not a setting
        results.append(failed("plugins", str(error), "fix or disable the plugin named above"))
        _skip_rest(results, ("providers", "mcp servers", "platforms", "store"))
        return Report(results, settings_valid=True)
    platform_errors = [e for e in errors if e.key.startswith("platforms.")]
    mcp_errors = [e for e in errors if e.key.startswith("mcp") or ": mcp server" in e.key]
    # Reported with each provider's checks, below.
    type_errors = [e for e in errors if isinstance(e, ProviderTypeError)]
    setting_errors = [e for e in errors if e not in platform_errors + mcp_errors + type_errors]
    if setting_errors:  # keys plugins declared, and the provider types' own keys
        results[0] = failed("settings", str(setting_errors[0]), _settings_fix(setting_errors[0]))
        _skip_rest(results, ("providers", "mcp servers", "platforms", "store"))
        return Report(results, settings_valid=False)
    specs, pool_settings = gateway.mcp.specs, gateway.mcp_pool.settings
    types = gateway.providers.types
    provider_checks = [
        check_provider(
            provider,
            configured_models(config, name),
            types,
            type_problem=kind.problem if (kind := types.get(provider.type)) else None,
        )
        for name, provider in config.providers.items()
    ]
    mcp_checks = [check_mcp_server(spec, pool_settings) for spec in specs.values()]
    if any(spec.enabled for spec in specs.values()):
        from hermes_core.mcp.pool import import_sdk

        import_sdk()  # it blocks the loop: not while the provider probes are being timed
    # Network probes and MCP starts are the slow part: run them all at once.
    provider_results, mcp_results = await asyncio.gather(
        asyncio.gather(*provider_checks), asyncio.gather(*mcp_checks)
    )
    for (name, _), rows in zip(config.providers.items(), provider_results, strict=True):
        results += [*rows, health_result(name, gateway.health.policies[name])]
    results += _first_per_check(_mcp_error_result(error) for error in mcp_errors)
    results += mcp_results
    results += await check_platforms(gateway, platform_errors)
    postgres = config.get("store.url")
    results.append(await check_postgres_store(config) if postgres else check_store(config))
    return Report(results, settings_valid=True)
