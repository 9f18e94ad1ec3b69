"""The one call path of every hook: pluggy's, made async, with each spec's kind applied.

pluggy is synchronous and stops at the first exception (pluggy#320). :class:`AsyncPluginManager`
keeps pluggy's whole calling convention (``pm.hook.<name>(**kwargs)``, implementation order,
``firstresult``, new-style wrappers, :meth:`~pluggy.PluginManager.add_hookcall_monitoring`)
and replaces only the innermost step: calling ``pm.hook.<name>(...)`` returns an awaitable, and
awaiting it runs the implementations one at a time, awaiting whatever each returns ("await me
maybe"). The rules each spec's kind declares (see :mod:`hermes_core.hookspecs`) are applied here
and nowhere else.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pluggy
from loguru import logger

from hermes_core.errors import HermesError
from hermes_core.hookspecs import KIND_OPTION, PROJECT_NAME, HermesSpec, HookKind

#: A call's implementations and its arguments, as pluggy's monitoring passes them.
Impls = Sequence[pluggy.HookImpl]
Kwargs = Mapping[str, Any]
#: ``before(hook_name, hook_impls, kwargs)``, as pluggy's monitoring calls it.
Before = Callable[[str, Impls, Kwargs], None]
#: ``after(outcome, hook_name, hook_impls, kwargs)``, as pluggy's monitoring calls it.
After = Callable[[pluggy.Result[Any], str, Impls, Kwargs], None]
#: What ends a watched call: called with its outcome.
OnEnd = Callable[[pluggy.Result[Any]], None]
#: ``on_call(hook_name, hook_impls, kwargs)``: a call starts; returns what gets its end.
OnCall = Callable[[str, Impls, Kwargs], OnEnd]
_Exec = Callable[[str, Sequence[pluggy.HookImpl], Mapping[str, Any], bool], Awaitable[Any]]
_Wrapper = Generator[None, Any, Any]


class HookCallError(Exception):
    """A decision hook raised; carries the plugin's name for the log line and the user."""

    def __init__(self, hook: str, plugin: str, error: BaseException) -> None:
        self.hook, self.plugin, self.error = hook, plugin, error
        super().__init__(f"plugin {plugin!r} raised in {hook}: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class PerPlugin:
    """A hook argument whose value depends on the implementation's plugin: each plugin gets
    ``factory(plugin_name)`` (``register_mcp_servers`` names who registered what)."""

    factory: Callable[[str], Any]


class AsyncPluginManager(pluggy.PluginManager):
    """A pluggy ``PluginManager`` whose hook calls are awaitables.

    Monitoring added with :meth:`add_hookcall_monitoring` (and so :meth:`enable_tracing`) sees
    each call's *awaited* outcome.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(HermesSpec)
        self._kinds: dict[str, HookKind] = {}
        self._firstresults: dict[str, bool] = {}
        self._inner_hookexec = cast(Callable[..., object], self._multicall)
        self._monitors = 0

    @property
    def monitored(self) -> bool:
        """Whether hook-call monitoring is on: then even a call no plugin answers is made."""
        return self._monitors > 0

    def kind(self, hook_name: str) -> HookKind:
        """The kind the spec of ``hook_name`` declares."""
        kind = self._kinds.get(hook_name)
        if kind is None:
            caller: pluggy.HookCaller = getattr(self.hook, hook_name)
            opts = cast(Mapping[str, Any], caller.spec.opts if caller.spec else {})
            kind = self._kinds[hook_name] = opts.get(KIND_OPTION, "observer")
        return kind

    def call_hook(
        self, hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
    ) -> Awaitable[Any]:
        """Call ``impls`` of ``hook_name`` as ``pm.hook.<name>(**kwargs)`` would, monitoring
        included, with ``kwargs`` taken as complete: no check of them against the spec."""
        return cast(
            Awaitable[Any], self._hookexec(hook_name, impls, kwargs, self._firstresult(hook_name))
        )

    def _firstresult(self, hook_name: str) -> bool:
        firstresult = self._firstresults.get(hook_name)
        if firstresult is None:
            caller: pluggy.HookCaller = getattr(self.hook, hook_name)
            opts = cast(Mapping[str, Any], caller.spec.opts if caller.spec else {})
            firstresult = self._firstresults[hook_name] = bool(opts.get("firstresult", False))
        return firstresult

    def add_hookcall_monitoring(self, before: Before, after: After) -> Callable[[], None]:
        """pluggy's monitoring, for calls that are awaited: ``after`` gets the final outcome."""
        inner = cast(_Exec, self._inner_hookexec)

        async def traced(
            hook_name: str,
            impls: Sequence[pluggy.HookImpl],
            kwargs: Mapping[str, Any],
            firstresult: bool,
        ) -> Any:
            before(hook_name, impls, kwargs)
            try:
                outcome = pluggy.Result(await inner(hook_name, impls, kwargs, firstresult), None)
            except BaseException as error:
                outcome = pluggy.Result(None, error)
            after(outcome, hook_name, impls, kwargs)
            return outcome.get_result()

        self._inner_hookexec = cast(Callable[..., object], traced)
        self._monitors += 1

        def undo() -> None:
            self._inner_hookexec = cast(Callable[..., object], inner)
            self._monitors -= 1

        return undo

    async def _multicall(
        self,
        hook_name: str,
        impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, Any],
        firstresult: bool,
    ) -> Any:
        kind = self.kind(hook_name)
        # Only registration hooks take per-plugin arguments: run hooks skip the check.
        arguments = _per_plugin_arguments if kind == "registration" else _arguments
        wrappers: list[tuple[pluggy.HookImpl, _Wrapper]] = []
        results: list[Any] = []
        error: BaseException | None = None
        # pluggy keeps wrappers after the plain implementations, and calls the list backwards.
        for impl in reversed(impls):
            try:
                value = impl.function(*arguments(impl, kwargs))
                if impl.wrapper:
                    wrapper = cast(_Wrapper, value)
                    next(wrapper)  # run the wrapper up to its ``yield``
                    wrappers.append((impl, wrapper))
                    continue
                # Most observers return None: skip the (slower) awaitable check for it.
                if value is not None and inspect.isawaitable(value):
                    value = await value
            except Exception as raised:
                if (failure := _failure(kind, hook_name, impl, raised)) is not None:
                    error = failure
                    break
                continue
            if value is not None:
                results.append(value)
                if firstresult:
                    break
        result = results[0] if firstresult and results else None if firstresult else results
        for impl, wrapper in reversed(wrappers):
            result, error = _unwind(kind, hook_name, impl, wrapper, result, error)
        if error is not None:
            raise error
        return result


def _arguments(impl: pluggy.HookImpl, kwargs: Mapping[str, Any]) -> list[Any]:
    return [kwargs[name] for name in impl.argnames]


def _per_plugin_arguments(impl: pluggy.HookImpl, kwargs: Mapping[str, Any]) -> list[Any]:
    values = _arguments(impl, kwargs)
    return [v.factory(impl.plugin_name) if isinstance(v, PerPlugin) else v for v in values]


def _failure(
    kind: HookKind, hook_name: str, impl: pluggy.HookImpl, error: Exception
) -> BaseException | None:
    """Apply the kind's rule to an implementation's exception: the error that ends the call,
    or ``None`` when it is logged and the other implementations go on."""
    if kind == "decision":
        return HookCallError(hook_name, impl.plugin_name, error)
    if kind == "registration" and isinstance(error, HermesError):
        return error  # a bad setting a plugin found stops start-up
    logger.opt(exception=error).error(
        "plugin {!r} raised in {}: {}: {}", impl.plugin_name, hook_name, type(error).__name__, error
    )
    return None


def _unwind(
    kind: HookKind,
    hook_name: str,
    impl: pluggy.HookImpl,
    wrapper: _Wrapper,
    result: Any,
    error: BaseException | None,
) -> tuple[Any, BaseException | None]:
    """Resume a wrapper after the implementations it wraps; its return value replaces the
    result, and what it raises follows the hook's kind."""
    try:
        if error is not None:
            wrapper.throw(error)
        else:
            wrapper.send(result)
    except StopIteration as stop:
        return stop.value, None
    except Exception as raised:
        if raised is error:
            return None, error
        if (failure := _failure(kind, hook_name, impl, raised)) is not None:
            return None, failure
        return result, error
    wrapper.close()
    problem = RuntimeError(f"wrapper {impl.plugin_name!r} of {hook_name} yielded twice")
    return None, _failure(kind, hook_name, impl, problem) or error


def watch_calls(pm: pluggy.PluginManager, on_call: OnCall) -> Callable[[], None]:
    """pluggy's hook-call monitoring, each call's end paired with its start: ``on_call(hook_name,
    hook_impls, kwargs)`` runs when a call starts and returns what gets the call's outcome when
    it ends (awaited calls overlap, so ends are matched by their ``kwargs``). Returns the undo
    function."""
    ends: dict[int, OnEnd] = {}

    def before(name: str, impls: Impls, kwargs: Kwargs) -> None:
        ends[id(kwargs)] = on_call(name, impls, kwargs)

    def after(outcome: pluggy.Result[Any], name: str, impls: Impls, kwargs: Kwargs) -> None:
        ends.pop(id(kwargs))(outcome)

    return pm.add_hookcall_monitoring(before, after)
