"""The typed facade over ``pm.hook`` that the core calls hooks through.

Each method is one hook call with its signature spelled out for the type checker; the rules of
the call (awaiting, first result, isolation) come from the spec's kind, applied by
:mod:`hermes_core.hookexec`. Run hooks get the facade's gateway as their ``gateway`` argument.
``HERMES_TRACE_PLUGINS=1`` logs every call and its implementations through pluggy's hook-call
monitoring.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy
from loguru import logger

from hermes_core.hookexec import AsyncPluginManager, Impls, Kwargs, OnEnd, PerPlugin, watch_calls
from hermes_core.types import ErrorKind, Message, RunResult, Session, Usage, make_result

if TYPE_CHECKING:
    from hermes_core.agent import Agent
    from hermes_core.cache import AgentCache
    from hermes_core.gateway import Gateway

TRACE_ENV = "HERMES_TRACE_PLUGINS"
#: Managers whose calls are already logged: several gateways may share one plugin host.
_traced: weakref.WeakSet[AsyncPluginManager] = weakref.WeakSet()


def trace_calls(pm: AsyncPluginManager) -> Callable[[], None]:
    """Log each hook call, its implementations in call order and its duration; returns the
    undo function of the monitoring it adds."""

    def started(name: str, impls: Impls, kwargs: Kwargs) -> OnEnd:
        began = time.perf_counter()

        def ended(outcome: pluggy.Result[Any]) -> None:
            raised = outcome.exception
            logger.info(
                "hook {} -> [{}] in {:.2f} ms{}",
                name,
                ", ".join(impl.plugin_name for impl in reversed(impls)),
                (time.perf_counter() - began) * 1000,
                "" if raised is None else f" (raised {type(raised).__name__})",
            )

        return ended

    return watch_calls(pm, started)


class Hooks:
    """Call hooks with typed signatures. Obtain one from ``gateway.hooks``."""

    def __init__(self, pm: AsyncPluginManager, gateway: Gateway) -> None:
        self._pm = pm
        self._hook = pm.hook
        self._gateway = gateway
        if os.environ.get(TRACE_ENV, "") not in ("", "0") and pm not in _traced:
            _traced.add(pm)
            trace_calls(pm)

    # --- registration --------------------------------------------------------------------

    async def register(self, name: str, register: Callable[..., Any]) -> None:
        """Call one ``register_*`` hook with the given ``register`` callback."""
        await getattr(self._hook, name)(register=register)

    async def register_per_plugin(
        self, name: str, registrar: Callable[[str], Callable[..., Any]]
    ) -> None:
        """Call one ``register_*`` hook, giving each plugin its own ``registrar(plugin)``."""
        await getattr(self._hook, name)(register=PerPlugin(registrar))

    # --- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        await self._hook.startup(gateway=self._gateway)

    async def shutdown(self) -> None:
        await self._hook.shutdown(gateway=self._gateway)

    # --- runs ----------------------------------------------------------------------------
    # Each method passes its own arguments on by name (``locals()``), plus the gateway: the
    # signature is the one place a hook's arguments are written besides its spec.

    async def _call_run_hook(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call run hook ``name`` with a method's ``arguments`` and the gateway. A hook no
        plugin implements costs nothing (None, as pluggy would answer), unless calls are
        monitored (``HERMES_TRACE_PLUGINS``), which then see it."""
        caller: pluggy.HookCaller = getattr(self._hook, name)
        impls = caller.get_hookimpls()  # a copy: a plugin may register another meanwhile
        if not impls and not self._pm.monitored:
            return None
        del arguments["self"]
        arguments["gateway"] = self._gateway
        # pluggy's own path minus HookCaller.__call__'s checks of the arguments, which the
        # typed signature above has made already (a few µs a call, several calls a run).
        return await self._pm.call_hook(name, impls, arguments)

    async def agent_run(self, session: Session, message: Message) -> RunResult | None:
        value = await self._call_run_hook("agent_run", locals())
        return None if value is None else _result("agent_run", value)

    async def pre_run(self, session: Session, message: Message) -> RunResult | None:
        value = await self._call_run_hook("pre_run", locals())
        return None if value is None else _result("pre_run", value)

    async def on_llm_request(
        self,
        session: Session,
        agent: Agent,
        model: str,
        duration_s: float,
        error_kind: ErrorKind | None,
        usage: Usage | None = None,
    ) -> None:
        await self._call_run_hook("on_llm_request", locals())

    async def on_fallback(
        self, session: Session, agent: Agent, error: str, from_model: str, to_model: str
    ) -> None:
        await self._call_run_hook("on_fallback", locals())

    async def post_run(
        self, session: Session, agent: Agent | None, result: RunResult, cache: AgentCache
    ) -> None:
        await self._call_run_hook("post_run", locals())

    async def on_evict(self, session_key: str, agent: Agent, reason: str) -> None:
        await self._call_run_hook("on_evict", locals())

    async def on_health_change(
        self, provider: str, model: str | None, state: str, reason: str, retry_at: float | None
    ) -> None:
        await self._call_run_hook("on_health_change", locals())

    # --- tools ---------------------------------------------------------------------------

    async def pre_tool_call(self, session: Session, tool: str, arguments: dict[str, Any]) -> Any:
        return await self._call_run_hook("pre_tool_call", locals())

    async def post_tool_call(
        self, session: Session, tool: str, arguments: dict[str, Any], result: str, duration_s: float
    ) -> None:
        await self._call_run_hook("post_tool_call", locals())


def _result(hook: str, value: Any) -> RunResult:
    if not isinstance(value, dict):
        raise TypeError(f"{hook} must return a RunResult dict or None, got {value!r}")
    return make_result(**value)
