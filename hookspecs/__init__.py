"""Hook specifications: the extension points of hermes-core.

Every hook may be implemented as a plain function or as a coroutine function; the core awaits
whatever an implementation returns. Implementations may accept any subset of the arguments
(pluggy passes them by name). Hooks are called one implementation at a time, last registered
first, with ``tryfirst``/``trylast`` respected; built-in plugins are ``trylast`` so yours run
before them.

Isolation: an exception raised by an implementation of a *registration* or *observer* hook
(``register_*``, ``startup``, ``shutdown``, ``on_*``, ``post_run``, ``post_tool_call``) is logged
with the plugin's name and the remaining implementations still run. An exception raised by a
*decision* hook (``pre_run``, ``pre_tool_call``) fails that run (``error_kind="internal"``) or
that tool call, because carrying on would ignore the decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    from hermes_core.types import ErrorKind, Message, RunResult, Session

PROJECT_NAME = "hermes_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


class HermesSpec:
    """The hook specifications, registered with ``pm.add_hookspecs(HermesSpec)``."""

    # --- registration hooks: called once at startup --------------------------------------

    @hookspec
    def register_platforms(self, register: RegisterPlatform) -> None:
        """Contribute platform adapters (chat front ends).

        Fires once when the gateway starts, before any platform is started.

        :param register: ``register(name, adapter_factory)``. ``adapter_factory(gateway,
            settings)`` is called only when ``platforms.<name>.enabled`` is true and returns an
            object with ``async start()``, ``async stop()`` and ``async wait_closed()``
            (see :class:`hermes_core.platforms.Platform`).
        :return: ignored.
        """

    @hookspec
    def register_mcp_servers(self, register: RegisterMCPServer) -> None:
        """Contribute MCP servers, exactly as if they were written under ``mcp.servers``.

        Fires once at startup. A server of the same name in the settings overrides the
        plugin's spec; two plugins registering one name is a startup error naming both.

        :param register: ``register(name, **server_spec)`` with the keys of
            ``mcp.servers.<name>``: ``command``, ``args``, ``env``, ``url``, ``transport``,
            ``timeout_s``.
        :return: ignored.
        """

    @hookspec
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

    @hookspec
    def register_providers(self, register: RegisterProvider) -> None:
        """Contribute LLM provider types.

        Fires once at startup. ``providers.<name>.type`` selects a registered type; the default
        type ``openai`` speaks the OpenAI chat-completions protocol.

        :param register: ``register(type_name, factory)``. ``factory(name, settings)`` returns a
            :class:`hermes_core.providers.Provider`.
        :return: ignored.
        """

    @hookspec
    def register_tools(self, register: RegisterTool) -> None:
        """Contribute Python tools that every agent may call.

        Fires once at startup.

        :param register: ``register(name, handler, description, parameters)``.
            ``handler(arguments)`` receives the decoded JSON arguments and returns a string (or
            an awaitable of one); ``parameters`` is a JSON schema object.
        :return: ignored.
        """

    @hookspec
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

    @hookspec
    def startup(self, gateway: Gateway) -> None:
        """The gateway has started: settings loaded, plugins registered, before any message.

        :param gateway: the running :class:`hermes_core.gateway.Gateway`.
        :return: ignored. Exceptions are logged and isolated.
        """

    @hookspec
    def shutdown(self, gateway: Gateway) -> None:
        """The gateway is stopping, after the last run finished.

        :param gateway: the stopping :class:`hermes_core.gateway.Gateway`.
        :return: ignored. Exceptions are logged and isolated.
        """

    # --- around each run -------------------------------------------------------------------

    @hookspec
    def pre_run(self, session: Session, message: Message) -> RunResult | dict[str, Any] | None:
        """Before every agent run, before the agent is fetched or created.

        Slash commands do not reach this hook.

        :param session: the :class:`hermes_core.types.Session` the message belongs to.
        :param message: the inbound :class:`hermes_core.types.Message`.
        :return: ``None`` to let the run proceed, or a RunResult (a dict; missing keys are
            filled with defaults) to short-circuit it: no LLM request is made, the result's
            ``final_response`` is the reply and ``post_run`` still fires with ``agent=None``.
            The first implementation returning non-``None`` wins.
        """

    @hookspec
    def on_llm_request(
        self,
        session: Session,
        agent: Agent,
        model: str,
        duration_s: float,
        error_kind: ErrorKind | None,
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
        :return: ignored. Exceptions are logged and isolated.
        """

    @hookspec
    def on_fallback(
        self, session: Session, agent: Agent, error: str, from_model: str, to_model: str
    ) -> None:
        """The run switches from one model to the next in ``agent.fallbacks``.

        :param session: the session being served.
        :param agent: the agent doing the run.
        :param error: one line describing why ``from_model`` failed.
        :param from_model: the ``provider:model`` that failed.
        :param to_model: the ``provider:model`` tried next.
        :return: ignored. Exceptions are logged and isolated.
        """

    @hookspec
    def post_run(
        self, session: Session, agent: Agent | None, result: RunResult, cache: AgentCache
    ) -> None:
        """After every run, failed or not (including short-circuited and crashed runs).

        This is where cache policies live: the built-in ``eviction`` and ``circuit_breaker``
        plugins implement it.

        :param session: the session that was served.
        :param agent: the agent that ran, or ``None`` when ``pre_run`` short-circuited.
        :param result: the :class:`hermes_core.types.RunResult`, every key present.
        :param cache: the :class:`hermes_core.cache.AgentCache`; ``cache.evict(key, reason)``
            removes an agent (``on_evict`` fires once the run has finished).
        :return: ignored. Exceptions are logged and isolated: the user still gets the reply.
        """

    @hookspec
    def on_evict(self, session_key: str, agent: Agent, reason: str) -> None:
        """A cached agent left the cache, for any reason.

        Reasons used by the core and built-ins: ``fallback_succeeded``, ``circuit_open``,
        ``reset``, ``model_changed``, ``lru``, ``idle``, ``shutdown``.

        :param session_key: the key of the session whose agent left.
        :param agent: the agent that was evicted.
        :param reason: why it left.
        :return: ignored. Exceptions are logged and isolated.
        """

    # --- around each tool call -------------------------------------------------------------

    @hookspec
    def pre_tool_call(self, session: Session, tool: str, arguments: dict[str, Any]) -> Any:
        """Before each tool call the model asked for.

        :param session: the session being served.
        :param tool: the tool's name as offered to the model.
        :param arguments: the decoded arguments.
        :return: ``None`` to make the call, or a replacement result (turned into a string) that
            the model sees instead; the tool is then not called. First non-``None`` wins.
        """

    @hookspec
    def post_tool_call(
        self, session: Session, tool: str, arguments: dict[str, Any], result: str
    ) -> None:
        """After each tool call, with the result the model will see (errors included).

        :param session: the session being served.
        :param tool: the tool's name as offered to the model.
        :param arguments: the decoded arguments.
        :param result: the text handed back to the model.
        :return: ignored. Exceptions are logged and isolated.
        """
