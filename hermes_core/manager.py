"""The plugin manager: built-ins, entry-point plugins, and a record of how each one loaded.

pluggy's own ``load_setuptools_entrypoints`` stops at the first broken plugin, so entry points
are loaded here one by one: disabled names are filtered *before* import, and a plugin that fails
to import or register is recorded and skipped, never taking the process down.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Literal

import pluggy
from loguru import logger

from hermes_core.errors import PluginError
from hermes_core.hookexec import AsyncPluginManager
from hermes_core.hookspecs import PROJECT_NAME

LOAD_PLUGINS_ENV = "HERMES_LOAD_PLUGINS"

#: Built-in plugins the gateway cannot work without: always registered, never disabled.
ESSENTIAL_PLUGINS: tuple[tuple[str, str], ...] = (("agent", "hermes_core.plugins.agent"),)
#: Built-in plugins, registered under these short, stable names (the names
#: ``plugins.disabled`` accepts). They are ordinary plugins; their hooks are ``trylast`` (or
#: ``tryfirst`` wrappers) so that third-party implementations run first.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("eviction", "hermes_core.plugins.eviction"),
    ("circuit_breaker", "hermes_core.plugins.circuit_breaker"),
    ("commands", "hermes_core.plugins.commands"),
    ("console", "hermes_core.plugins.console"),
    ("http", "hermes_core.plugins.http"),
    ("openai", "hermes_core.plugins.openai_provider"),
    ("metrics", "hermes_core.plugins.metrics"),
    ("tracing", "hermes_core.plugins.tracing"),
)

Status = Literal["loaded", "disabled", "failed"]


@dataclass
class PluginRecord:
    """What ``hermes-core plugins`` reports for one plugin."""

    name: str
    dist: str | None
    version: str | None
    builtin: bool
    status: Status
    error: str | None = None
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "hooks": self.hooks,
            "builtin": self.builtin,
            "status": self.status,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def _allowed_entry_points() -> set[str] | None:
    """Names from ``HERMES_LOAD_PLUGINS`` (empty means none), or None when it is unset."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


class PluginHost:
    """Owns the pluggy ``PluginManager`` and the load record of every plugin."""

    def __init__(self) -> None:
        self.pm = AsyncPluginManager()
        #: One record per plugin, in load order (built-ins first). A list, not a dict by
        #: name: an entry point whose name is already taken is reported next to the owner.
        self.records: list[PluginRecord] = []

    def load(self, disabled: Iterable[str] = (), *, entry_points: bool = True) -> None:
        """Register the built-ins, then every third-party plugin from the entry-point group."""
        blocked = set(disabled)
        for name in blocked:
            self.pm.set_blocked(name)
        self.load_builtins(blocked)
        if entry_points:
            self.load_entry_points(blocked)
            self._warn_unknown(blocked, "plugins.disabled")
            allowed = _allowed_entry_points()
            if allowed:
                self._warn_unknown(allowed, LOAD_PLUGINS_ENV)

    def load_builtins(self, blocked: set[str]) -> None:
        dist = metadata.distribution("hermes-core")
        for name in blocked & {name for name, _ in ESSENTIAL_PLUGINS}:
            logger.warning("plugins.disabled names {!r}, which cannot be disabled", name)
        for name, module_name in ESSENTIAL_PLUGINS:
            self.pm.unblock(name)
            self._load(name, lambda m=module_name: importlib.import_module(m), dist, True)
        for name, module_name in DEFAULT_PLUGINS:
            if name in blocked:
                self._record(name, dist.name, dist.version, True, "disabled")
                continue
            self._load(name, lambda m=module_name: importlib.import_module(m), dist, True)

    def load_entry_points(self, blocked: set[str]) -> None:
        allowed = _allowed_entry_points()
        for ep in metadata.entry_points(group=PROJECT_NAME):
            dist = ep.dist
            dist_name, version = (dist.name, dist.version) if dist else (None, None)
            owner = self.record(ep.name)
            if owner is not None:
                if not owner.builtin and owner.dist == dist_name:
                    continue  # the same distribution visible twice on sys.path
                taker = "the built-in plugin" if owner.builtin else f"the plugin from {owner.dist}"
                self._failed(
                    ep.name,
                    dist_name,
                    version,
                    False,
                    f"PluginError: the name {ep.name!r} is already taken by {taker}; "
                    "rename the entry point",
                    # Disabling by name would disable the owner too: name the distribution.
                    hint=f"Uninstall {dist_name or 'its distribution'} or rename its entry point",
                )
                continue
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                why = "disabled" if ep.name in blocked else f"not in {LOAD_PLUGINS_ENV}"
                logger.debug("plugin {} not loaded: {}", ep.name, why)
                self._record(ep.name, dist_name, version, False, "disabled")
                continue
            self._load(ep.name, ep.load, dist, False)

    def register(self, plugin: object, name: str, *, builtin: bool = False) -> None:
        """Register an already-imported plugin (tests and embedding applications use this)."""
        self._register(plugin, name)
        self._record(name, None, None, builtin, "loaded")

    def record(self, name: str) -> PluginRecord | None:
        """The load record of the plugin registered (or refused) under ``name``."""
        return next((record for record in self.records if record.name == name), None)

    def _register(self, plugin: object, name: str) -> None:
        self._check_hookimpls(plugin)
        if self.pm.register(plugin, name=name) is None:
            raise PluginError(f"{name!r} is blocked by plugins.disabled")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=name)
            raise

    def _load(
        self,
        name: str,
        load: Any,
        dist: metadata.Distribution | None,
        builtin: bool,
    ) -> None:
        dist_name = dist.name if dist is not None else None
        version = dist.version if dist is not None else None
        try:
            plugin = load()
            if self.pm.is_registered(plugin):
                raise PluginError(f"already registered as {self.pm.get_name(plugin)!r}")
            self._register(plugin, name)
        except Exception as error:  # any plugin bug: record, log, carry on without it
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            self._failed(name, dist_name, version, builtin, message)
            return
        self._record(name, dist_name, version, builtin, "loaded")

    def _failed(
        self,
        name: str,
        dist: str | None,
        version: str | None,
        builtin: bool,
        error: str,
        hint: str | None = None,
    ) -> None:
        self._record(name, dist, version, builtin, "failed", error)
        logger.error(
            "plugin {!r} (from {}) failed to load and was skipped: {}. {}",
            name,
            dist or "unknown distribution",
            error,
            hint or f'Disable it with plugins.disabled = ["{name}"] or HERMES_LOAD_PLUGINS=',
        )

    def _warn_unknown(self, names: set[str], where: str) -> None:
        # A name nobody has is almost always a typo; say which names do exist (pytest#5661).
        known = {record.name for record in self.records}
        for name in sorted(names - known):
            logger.warning(
                "{} names {!r}, but no plugin has that name (plugins: {})",
                where,
                name,
                ", ".join(sorted(known)),
            )

    @staticmethod
    def _check_hookimpls(plugin: object) -> None:
        # Old-style wrappers get a pluggy.Result to inspect, which an awaited call cannot hand
        # them in pluggy's form: reject them loudly at load time (new-style wrappers work).
        for attr in dir(plugin):
            opts = getattr(getattr(plugin, attr, None), f"{PROJECT_NAME}_impl", None)
            if isinstance(opts, dict) and opts.get("hookwrapper"):
                raise PluginError(
                    f"hook {attr}: old-style hookwrapper=True is not supported; "
                    "use @hookimpl(wrapper=True)"
                )

    def _record(
        self,
        name: str,
        dist: str | None,
        version: str | None,
        builtin: bool,
        status: Status,
        error: str | None = None,
    ) -> None:
        plugin = self.pm.get_plugin(name) if status == "loaded" else None
        hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or []) if plugin else []
        self.records.append(PluginRecord(name, dist, version, builtin, status, error, hooks))

    def describe(self) -> list[dict[str, Any]]:
        """The load record as JSON-ready dicts, built-ins first."""
        return [record.as_dict() for record in self.records]

    def plugin_name(self, plugin: object) -> str:
        name = self.pm.get_name(plugin)
        if name:
            return name
        return plugin.__name__ if isinstance(plugin, ModuleType) else repr(plugin)
