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
from hermes_core.hookspecs import PROJECT_NAME, HermesSpec

LOAD_PLUGINS_ENV = "HERMES_LOAD_PLUGINS"

#: Built-in plugins, registered under these short, stable names (the names
#: ``plugins.disabled`` accepts). They are ordinary plugins, and ``trylast``.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("eviction", "hermes_core.plugins.eviction"),
    ("circuit_breaker", "hermes_core.plugins.circuit_breaker"),
    ("commands", "hermes_core.plugins.commands"),
    ("console", "hermes_core.plugins.console"),
    ("openai", "hermes_core.plugins.openai_provider"),
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
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(HermesSpec)
        self.records: dict[str, PluginRecord] = {}

    def load(self, disabled: Iterable[str] = (), *, entry_points: bool = True) -> None:
        """Register the built-ins, then every third-party plugin from the entry-point group."""
        blocked = set(disabled)
        for name in blocked:
            self.pm.set_blocked(name)
        self.load_builtins(blocked)
        if entry_points:
            self.load_entry_points(blocked)

    def load_builtins(self, blocked: set[str]) -> None:
        dist = metadata.distribution("hermes-core")
        for name, module_name in DEFAULT_PLUGINS:
            if name in blocked:
                self._record(name, dist.name, dist.version, True, "disabled")
                continue
            self._load(name, lambda m=module_name: importlib.import_module(m), dist, True)

    def load_entry_points(self, blocked: set[str]) -> None:
        allowed = _allowed_entry_points()
        seen: set[str] = set()
        for ep in metadata.entry_points(group=PROJECT_NAME):
            if ep.name in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(ep.name)
            dist = ep.dist
            dist_name, version = (dist.name, dist.version) if dist else (None, None)
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                why = "disabled" if ep.name in blocked else f"not in {LOAD_PLUGINS_ENV}"
                logger.debug("plugin {} not loaded: {}", ep.name, why)
                self._record(ep.name, dist_name, version, False, "disabled")
                continue
            self._load(ep.name, ep.load, dist, False)

    def register(self, plugin: object, name: str, *, builtin: bool = False) -> None:
        """Register an already-imported plugin (tests and embedding applications use this)."""
        self._check_hookimpls(plugin)
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=name)
            raise
        self._record(name, None, None, builtin, "loaded")

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
            self.register(plugin, name, builtin=builtin)
        except Exception as error:  # any plugin bug: record, log, carry on without it
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            self._record(name, dist_name, version, builtin, "failed", message)
            logger.error(
                "plugin {!r} (from {}) failed to load and was skipped: {}. "
                'Disable it with plugins.disabled = ["{}"] or HERMES_LOAD_PLUGINS=',
                name,
                dist_name or "unknown distribution",
                message,
                name,
            )
            return
        self._record(name, dist_name, version, builtin, "loaded")

    @staticmethod
    def _check_hookimpls(plugin: object) -> None:
        # Hooks are called one implementation at a time (to await each and isolate failures),
        # so pluggy's wrapper protocol cannot be honoured: reject it loudly at load time.
        for attr in dir(plugin):
            opts = getattr(getattr(plugin, attr, None), f"{PROJECT_NAME}_impl", None)
            if isinstance(opts, dict) and (opts.get("wrapper") or opts.get("hookwrapper")):
                raise PluginError(f"hook {attr}: wrapper implementations are not supported")

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
        self.records[name] = PluginRecord(name, dist, version, builtin, status, error, hooks)

    def describe(self) -> list[dict[str, Any]]:
        """The load record as JSON-ready dicts, built-ins first."""
        return [record.as_dict() for record in self.records.values()]

    def plugin_name(self, plugin: object) -> str:
        name = self.pm.get_name(plugin)
        if name:
            return name
        return plugin.__name__ if isinstance(plugin, ModuleType) else repr(plugin)
