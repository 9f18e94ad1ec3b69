"""Hook specifications: the extension points of hermes-core.

Every hook may be implemented as a plain function or as a coroutine function; the core awaits
whatever an implementation returns. Implementations may accept any subset of the arguments
(pluggy passes them by name). Implementations run one at a time, last registered first, with
``tryfirst``/``trylast`` respected; most built-in plugins are ``trylast`` so yours run before
them.

Each spec declares its *kind* with :func:`spec`, and the kind carries the call rules
(:mod:`hermes_core.hookexec` applies them to every call):

- ``registration`` (``register_*``, ``startup``): an exception is logged with the plugin's name
  and the other implementations still run; a :class:`~hermes_core.errors.HermesError` (a bad
  setting a plugin found) stops start-up instead.
- ``decision`` (``pre_run``, ``agent_run``, ``pre_tool_call``; pluggy's ``firstresult``): the
  first non-``None`` *awaited* value wins. An exception fails that run (``error_kind="internal"``)
  or that tool call, because carrying on would ignore the decision.
- ``observer`` (``shutdown``, ``on_*``, ``post_run``, ``post_tool_call``): return values are
  ignored; an exception is logged with the plugin's name and the other implementations still run.

New-style wrappers (``@hookimpl(wrapper=True)``, a generator that does ``result = yield`` and
returns the result) work on every hook: the value sent in at ``yield`` is the *awaited* result
of the implementations it wraps, and an exception is thrown in there. Old-style
``hookwrapper=True`` implementations are refused at load time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pluggy

if TYPE_CHECKING:
    from hermes_core.agent import Agent
    from hermes_core.cache import AgentCache
    from hermes_core.commands import RegisterCommand
    from hermes_core.gateway import Gateway
    from hermes_core.mcp import RegisterMCPServer
    from hermes_core.platforms import RegisterPlatform
    from hermes_core.providers import RegisterProvider
    from hermes_core.settings.schema import RegisterSetting
    from hermes_core.tools import RegisterTool
    from hermes_core.types import ErrorKind, Message, RunResult, Session, Usage

PROJECT_NAME = "hermes_core"
#: The key of a spec's pluggy options that holds its :data:`HookKind`.
KIND_OPTION = "kind"

HookKind = Literal["registration", "decision", "observer"]
_Spec = TypeVar("_Spec", bound=Callable[..., Any])

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


def spec(kind: HookKind) -> Callable[[_Spec], _Spec]:
    """Mark a hook specification and its kind; decision hooks are pluggy ``firstresult``.

    The kind is kept in the spec's own pluggy options (``HookCaller.spec.opts["kind"]``), so
    the rules of each hook live on its spec and nowhere else.
    """

    def mark(function: _Spec) -> _Spec:
        hookspec(firstresult=kind == "decision")(function)
        getattr(function, f"{PROJECT_NAME}_spec")[KIND_OPTION] = kind
        return function

    return mark


class HermesSpec:
    """The hook specifications, registered with ``pm.add_hookspecs(HermesSpec)``."""

    # --- registration hooks: called once at startup --------------------------------------

    @spec("registration")
    def register_platforms(self, register: RegisterPlatform) -> None:
        """Contribute platform adapters (chat front ends).

        Fires once when the gateway starts, before any platform is started.

        :param register: ``register(name, adapter_factory)``. ``adapter_factory(gateway,
            settings)`` is called only when ``platforms.<name>.enabled`` is true and returns an
            object with ``async start()``, ``async stop()`` and ``async wait_closed()``
            (see :class:`hermes_core.platforms.Platform`).
        :return: ignored.
        """

    @spec("registration")
    def register_mcp_servers(self, register: RegisterMCPServer) -> None:
        """Contribute MCP servers, exactly as if they were written under ``mcp.servers``.

        Fires once at startup. A server of the same name in the settings overrides the
        plugin's spec; two plugins registering one name is a startup error naming both.

        :param register: ``register(name, **server_spec)`` with the keys of
            ``mcp.servers.<name>``: ``command``, ``args``, ``env``, ``url``, ``transport``,
            ``timeout_s``.
        :return: ignored.
        """

    @spec("registration")
    def register_commands(self, register: RegisterCommand) -> None:
        """Contribute slash commands such as ``/reset``.

        Fires once at startup. A command runs inside its session's queue, so it never overlaps
        a run of the same session, and it bypasses ``pre_run`` (``/reset`` must work while the
        circuit breaker is open).

        :param register: ``register("/name", handler, help)``. ``handler(ctx)`` receives a
            :class:`hermes_core.commands.CommandContext` and returns the reply text (or an
            awaitable of it).
        :return: ignored.
        """

    @spec("registration")
    def register_providers(self, register: RegisterProvider) -> None:
        """Contribute LLM provider types.

        Fires once at startup. ``providers.<name>.type`` selects a registered type; the default
        type ``openai`` speaks the OpenAI chat-completions protocol.

        :param register: ``register(type_name, factory)``. ``factory(name, settings)`` returns a
            :class:`hermes_core.providers.Provider`.
        :return: ignored.
        """

    @spec("registration")
    def register_tools(self, register: RegisterTool) -> None:
        """Contribute Python tools that every agent may call.

        Fires once at startup.

        :param register: ``register(name, handler, description, parameters)``.
            ``handler(arguments)`` receives the decoded JSON arguments and returns a string (or
            an awaitable of one); ``parameters`` is a JSON schema object.
        :return: ignored.
        """

    @spec("registration")
    def register_settings(self, register: RegisterSetting) -> None:
        """Declare a plugin's settings keys, so they are checked with the core's.

        Fires once at startup, before the settings are validated: when the gateway collects
        its plugins (``hermes-core run``, ``config check``, ``doctor``). Each declared key is
        then checked like a core key (a wrong value ends start-up with exit code 2 and one line
        naming it), its default is filled in, ``config check`` stops warning that it is
        unknown, and the plugin reads it back validated with ``gateway.config.get(key)``.

        :param register: ``register(key, type, default, description, **options)``. ``key`` is
            dotted, ``<name>`` standing for any table name (``platforms.<name>.x``); ``type``
            is ``str``, ``int``, ``float`` (any number), ``bool``, ``list`` or ``dict`` (a
            table), or a tuple of them; leave ``default`` out for a key without one. Options:
            ``minimum``, ``maximum`` (give every count and duration both),
            ``exclusive_minimum``, ``choices``, ``rules`` (callables returning a problem or
            ``None``), ``provider_type`` (a key of ``providers.<name>`` tables of that type
            only) and ``open`` (a table whose own keys are free). The first declaration of a
            key wins. See :class:`hermes_core.settings.schema.Setting`.
        :return: ignored.
        """

    # --- lifecycle -------------------------------------------------------------------------

    @spec("registration")
    def startup(self, gateway: Gateway) -> None:
        """The gateway has started: settings loaded, plugins registered, before any message.

        :param gateway: the running :class:`hermes_core.gateway.Gateway`.
        :return: ignored. Exceptions are logged and isolated, except a
            :class:`~hermes_core.errors.HermesError`, which stops start-up.
        """

    @spec("observer")
    def shutdown(self, gateway: Gateway) -> None:
        """The gateway is stopping, after the last run finished.

        :param gateway: the stopping :class:`hermes_core.gateway.Gateway`.
        :return: ignored. Exceptions are logged and isolated.
        """

    # --- around each run -------------------------------------------------------------------
    # Every run hook also receives ``gateway``, the Gateway serving the run: plugins read their
    # settings (``gateway.plugin_settings(name)``) and find their per-gateway state through it.

    @spec("decision")
    def agent_run(self, session: Session, message: Message, gateway: Gateway) -> RunResult | None:
        """Perform one run: ``pre_run``, the agent's model and tool loop, and the commit of
        its result to the store.

        The built-in ``agent`` plugin implements it (``trylast``) with
        :meth:`hermes_core.gateway.Gateway.execute_run`. Wrap it (``@hookimpl(wrapper=True)``,
        ``result = yield``) to observe or time whole runs, short-circuited ones included: the
        built-in ``tracing`` plugin opens its run span there. Returning a RunResult from an
        ordinary implementation replaces the run loop (the store and ``post_run`` still see the
        result; nothing is committed for you).

        :param session: the session the message belongs to.
        :param message: the inbound message.
        :param gateway: the gateway serving the run.
        :return: the run's :class:`~hermes_core.types.RunResult`. An exception fails the run
            (``error_kind="internal"``).
        """

    @spec("decision")
    def pre_run(
        self, session: Session, message: Message, gateway: Gateway
    ) -> RunResult | dict[str, Any] | None:
        """Before every agent run, before the agent is fetched or created.

        Slash commands do not reach this hook.

        :param session: the :class:`hermes_core.types.Session` the message belongs to.
        :param message: the inbound :class:`hermes_core.types.Message`.
        :param gateway: the gateway serving the run.
        :return: ``None`` to let the run proceed, or a RunResult (a dict; missing keys are
            filled with defaults) to short-circuit it: no LLM request is made, the result's
            ``final_response`` is the reply and ``post_run`` still fires with ``agent=None``.
            The first implementation returning non-``None`` wins.
        """

    @spec("observer")
    def on_llm_request(
        self,
        session: Session,
        agent: Agent,
        model: str,
        duration_s: float,
        error_kind: ErrorKind | None,
        usage: Usage | None,
        gateway: Gateway,
    ) -> None:
        """One request to an LLM provider has ended, answered or failed.

        Fires during a run, once per request: every retry and every fallback model is a request
        of its own, so a run whose primary failed once, was retried, then failed over fires it
        three times (``result["api_calls"]`` counts the same requests). It fires on the run's
        own task, after the provider call returned or raised and before any retry wait or
        ``on_fallback``. Metrics (latency by model) and tracing (one span per request) use it.

        :param session: the session being served.
        :param agent: the agent doing the run.
        :param model: the ``provider:model`` that was asked.
        :param duration_s: wall time of the request, in seconds (no retry wait included).
        :param error_kind: ``None`` when the model answered, else the failure's ``error_kind``
            (``"rate_limit"``, ``"timeout"``, ``"server"``, ``"connection"``, ``"auth"`` or
            ``"non_retryable"``).
        :param usage: the tokens the upstream counted for this request
            (``prompt_tokens``, ``completion_tokens``, ``total_tokens``), or ``None`` when it
            failed or reported none.
        :param gateway: the gateway serving the run.
        :return: ignored. Exceptions are logged and isolated.
        """

    @spec("observer")
    def on_fallback(
        self,
        session: Session,
        agent: Agent,
        error: str,
        from_model: str,
        to_model: str,
        gateway: Gateway,
    ) -> None:
        """The run switches from one model to the next in ``agent.fallbacks``.

        :param session: the session being served.
        :param agent: the agent doing the run.
        :param error: one line describing why ``from_model`` failed.
        :param from_model: the ``provider:model`` that failed.
        :param to_model: the ``provider:model`` tried next.
        :param gateway: the gateway serving the run.
        :return: ignored. Exceptions are logged and isolated.
        """

    @spec("observer")
    def post_run(
        self,
        session: Session,
        agent: Agent | None,
        result: RunResult,
        cache: AgentCache,
        gateway: Gateway,
    ) -> None:
        """After every run, failed or not (including short-circuited and crashed runs).

        This is where cache policies live: the built-in ``eviction`` and ``circuit_breaker``
        plugins implement it.

        :param session: the session that was served.
        :param agent: the agent that ran, or ``None`` when ``pre_run`` short-circuited.
        :param result: the :class:`hermes_core.types.RunResult`, every key present.
        :param cache: the :class:`hermes_core.cache.AgentCache`; ``cache.evict(key, reason)``
            removes an agent (``on_evict`` fires once the run has finished).
        :param gateway: the gateway serving the run.
        :return: ignored. Exceptions are logged and isolated: the user still gets the reply.
        """

    @spec("observer")
    def on_evict(self, session_key: str, agent: Agent, reason: str, gateway: Gateway) -> None:
        """A cached agent left the cache, for any reason.

        Reasons used by the core and built-ins: ``fallback_succeeded``, ``circuit_open``,
        ``reset``, ``model_changed``, ``lru``, ``idle``, ``shutdown``.

        :param session_key: the key of the session whose agent left.
        :param agent: the agent that was evicted.
        :param reason: why it left.
        :param gateway: the gateway whose cache it left.
        :return: ignored. Exceptions are logged and isolated.
        """

    @spec("observer")
    def on_health_change(
        self,
        provider: str,
        model: str | None,
        state: str,
        reason: str,
        retry_at: float | None,
        gateway: Gateway,
    ) -> None:
        """A gateway-wide breaker of a model, or of a whole provider, changed state.

        Fires once per transition, on the task of the request that caused it (or of the
        gateway's own probe): ``open`` when the model is skipped from now on, ``half_open``
        when its one probe is sent, ``closed`` when it answered again.

        :param provider: the ``providers.<name>`` name.
        :param model: the model, or ``None`` for the provider's own breaker (a rejected key,
            refused connections: every model of the provider is skipped).
        :param state: ``"closed"``, ``"open"`` or ``"half_open"``.
        :param reason: one line saying why (the failure that opened it, ``answered``...).
        :param retry_at: when an open breaker lets its probe through (a ``time.time()``
            timestamp), else ``None``.
        :param gateway: the gateway whose health changed.
        :return: ignored. Exceptions are logged and isolated.
        """

    # --- around each tool call -------------------------------------------------------------

    @spec("decision")
    def pre_tool_call(
        self, session: Session, tool: str, arguments: dict[str, Any], gateway: Gateway
    ) -> Any:
        """Before each tool call the model asked for.

        :param session: the session being served.
        :param tool: the tool's name as offered to the model.
        :param arguments: the decoded arguments.
        :param gateway: the gateway serving the run.
        :return: ``None`` to make the call, or a replacement result (turned into a string) that
            the model sees instead; the tool is then not called. First non-``None`` wins.
        """

    @spec("observer")
    def post_tool_call(
        self,
        session: Session,
        tool: str,
        arguments: dict[str, Any],
        result: str,
        duration_s: float,
        gateway: Gateway,
    ) -> None:
        """After each tool call, with the result the model will see (errors included).

        Fires on the tool call's own task, which inherits the run's context (an OpenTelemetry
        span made current by an ``agent_run`` wrapper is the parent of what it records).

        :param session: the session being served.
        :param tool: the tool's name as offered to the model.
        :param arguments: the decoded arguments.
        :param result: the text handed back to the model.
        :param duration_s: wall time from the model's request to the result, in seconds
            (``pre_tool_call`` included).
        :param gateway: the gateway serving the run.
        :return: ignored. Exceptions are logged and isolated.
        """
