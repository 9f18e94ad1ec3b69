"""A typed, async facade over ``pm.hook``.

pluggy is synchronous and stops at the first exception, so every hook is called here one
implementation at a time, in pluggy's order: whatever an implementation returns is awaited when
it is awaitable ("await me maybe"), observer hooks isolate and log each plugin's exception, and
first-result hooks stop at the first non-``None`` *awaited* value.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy
from loguru import logger

from hermes_core.errors import HermesError
from hermes_core.types import ErrorKind, Message, RunResult, Session, make_result

if TYPE_CHECKING:
    from hermes_core.agent import Agent
    from hermes_core.cache import AgentCache
    from hermes_core.gateway import Gateway

TRACE_ENV = "HERMES_TRACE_PLUGINS"
STARTUP_HOOKS = frozenset(
    {
        "register_platforms",
        "register_mcp_servers",
        "register_commands",
        "register_providers",
        "register_tools",
        "register_settings",
        "startup",
    }
)


class HookCallError(Exception):
    """A decision hook raised; carries the plugin's name for the log line and the user."""

    def __init__(self, hook: str, plugin: str, error: BaseException) -> None:
        self.hook, self.plugin, self.error = hook, plugin, error
        super().__init__(f"plugin {plugin!r} raised in {hook}: {type(error).__name__}: {error}")


class Hooks:
    """Call hooks with typed signatures. Obtain one from ``gateway.hooks``."""

    def __init__(self, pm: pluggy.PluginManager, *, trace: bool | None = None) -> None:
        self._pm = pm
        self.trace = os.environ.get(TRACE_ENV, "") not in ("", "0") if trace is None else trace

    async def _call(
        self,
        name: str,
        kwargs: dict[str, Any] | Callable[[str], dict[str, Any]],
        *,
        isolate: bool,
        first_result: bool,
    ) -> Any:
        caller: pluggy.HookCaller = getattr(self._pm.hook, name)
        # pluggy runs the last-registered implementation first; tryfirst/trylast are already
        # reflected in this list's order.
        impls = list(reversed(caller.get_hookimpls()))
        started = time.perf_counter()
        try:
            for impl in impls:
                args = kwargs(impl.plugin_name) if callable(kwargs) else kwargs
                try:
                    value = impl.function(*(args[arg] for arg in impl.argnames))
                    if inspect.isawaitable(value):
                        value = await value
                except Exception as error:
                    # A configuration problem a plugin finds while the gateway starts must stop
                    # start-up; during runs nothing may escape to a platform.
                    if isinstance(error, HermesError) and name in STARTUP_HOOKS:
                        raise
                    if not isolate:
                        raise HookCallError(name, impl.plugin_name, error) from error
                    logger.opt(exception=error).error(
                        "plugin {!r} raised in {}: {}: {}",
                        impl.plugin_name,
                        name,
                        type(error).__name__,
                        error,
                    )
                    continue
                if first_result and value is not None:
                    return value
            return None
        finally:
            if self.trace:
                logger.info(
                    "hook {} -> [{}] in {:.2f} ms",
                    name,
                    ", ".join(impl.plugin_name for impl in impls),
                    (time.perf_counter() - started) * 1000,
                )

    # --- registration --------------------------------------------------------------------

    async def register(self, name: str, register: Callable[..., Any]) -> None:
        """Call one ``register_*`` hook with the given ``register`` callback."""
        await self._call(name, {"register": register}, isolate=True, first_result=False)

    async def register_per_plugin(
        self, name: str, registrar: Callable[[str], Callable[..., Any]]
    ) -> None:
        """Call one ``register_*`` hook, giving each plugin its own ``registrar(plugin)``."""
        await self._call(
            name, lambda plugin: {"register": registrar(plugin)}, isolate=True, first_result=False
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def startup(self, gateway: Gateway) -> None:
        await self._call("startup", {"gateway": gateway}, isolate=True, first_result=False)

    async def shutdown(self, gateway: Gateway) -> None:
        await self._call("shutdown", {"gateway": gateway}, isolate=True, first_result=False)

    # --- runs ----------------------------------------------------------------------------

    async def pre_run(self, session: Session, message: Message) -> RunResult | None:
        value = await self._call(
            "pre_run", {"session": session, "message": message}, isolate=False, first_result=True
        )
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TypeError(f"pre_run must return a RunResult dict or None, got {value!r}")
        return make_result(**value)

    async def on_llm_request(
        self,
        session: Session,
        agent: Agent,
        model: str,
        duration_s: float,
        error_kind: ErrorKind | None,
    ) -> None:
        kwargs = {
            "session": session,
            "agent": agent,
            "model": model,
            "duration_s": duration_s,
            "error_kind": error_kind,
        }
        await self._call("on_llm_request", kwargs, isolate=True, first_result=False)

    async def on_fallback(
        self, session: Session, agent: Agent, error: str, from_model: str, to_model: str
    ) -> None:
        kwargs = {
            "session": session,
            "agent": agent,
            "error": error,
            "from_model": from_model,
            "to_model": to_model,
        }
        await self._call("on_fallback", kwargs, isolate=True, first_result=False)

    async def post_run(
        self, session: Session, agent: Agent | None, result: RunResult, cache: AgentCache
    ) -> None:
        kwargs = {"session": session, "agent": agent, "result": result, "cache": cache}
        await self._call("post_run", kwargs, isolate=True, first_result=False)

    async def on_evict(self, session_key: str, agent: Agent, reason: str) -> None:
        kwargs = {"session_key": session_key, "agent": agent, "reason": reason}
        await self._call("on_evict", kwargs, isolate=True, first_result=False)

    # --- tools ---------------------------------------------------------------------------

    async def pre_tool_call(self, session: Session, tool: str, arguments: dict[str, Any]) -> Any:
        kwargs = {"session": session, "tool": tool, "arguments": arguments}
        return await self._call("pre_tool_call", kwargs, isolate=False, first_result=True)

    async def post_tool_call(
        self, session: Session, tool: str, arguments: dict[str, Any], result: str
    ) -> None:
        kwargs = {"session": session, "tool": tool, "arguments": arguments, "result": result}
        await self._call("post_tool_call", kwargs, isolate=True, first_result=False)
