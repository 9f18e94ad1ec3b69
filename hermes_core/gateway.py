"""The gateway: turns inbound messages into serialized per-session runs, with hooks around each.

Runs of one session happen one at a time, in arrival order (the sessions component's locks);
different sessions run concurrently. Nothing a run does can raise into a platform: every
failure becomes a RunResult with ``failed=True``. The gateway is the only writer of a
conversation's history: a turn joins the cached agent's history only once the store has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from loguru import logger

from hermes_core.agent import Agent, AgentServices
from hermes_core.agent_factory import AgentFactory, model_chain
from hermes_core.cache import AgentCache
from hermes_core.commands import CommandContext, CommandRegistry
from hermes_core.configure import configure_gateway
from hermes_core.errors import ConfigError
from hermes_core.events import (
    RunEvent,
    RunFinished,
    RunStarted,
    TextDelta,
    current_sink,
    emit,
    streaming,
    until_finished,
)
from hermes_core.health import ModelHealth
from hermes_core.health.prober import ActiveProber
from hermes_core.health.shared import SharedHealth
from hermes_core.hooks import Hooks
from hermes_core.manager import PluginHost
from hermes_core.mcp import MCPRegistry
from hermes_core.mcp.asking import running_session
from hermes_core.mcp.pool import MCPPool
from hermes_core.mcp.sampling import GatewayModels
from hermes_core.platform_settings import PlatformPlan
from hermes_core.platforms import PlatformRegistry
from hermes_core.providers import ProviderRegistry
from hermes_core.redaction import register_settings
from hermes_core.run_request import RunRequest
from hermes_core.runs import crash_reply, internal_failure, scrubbed, written
from hermes_core.sessions import Sessions
from hermes_core.settings import Config, ModelRef, core_registry
from hermes_core.settings.schema import Unknown
from hermes_core.store import FinishedRun, Store
from hermes_core.store_config import state_dir, store_from_config
from hermes_core.tools import ToolRegistry
from hermes_core.types import Message, Reply, RunResult, Session, new_id

#: How often idle agents and sessions are looked for, at most.
SWEEP_INTERVAL_S = 30.0


class Gateway:
    """One process's run loop: sessions, the agent cache, and the registries plugins fill."""

    def __init__(
        self, config: Config, host: PluginHost | None = None, *, store: Store | None = None
    ) -> None:
        self.config = config
        register_settings(config.raw)  # so no configured secret leaves in any text
        if host is None:
            host = PluginHost()
            host.load(config.disabled_plugins)
        self.host = host
        self.hooks = Hooks(host.pm, self)
        self.sessions = Sessions(
            store if store is not None else store_from_config(config),
            max_sessions=int(config.get("cache.max_sessions")),
            idle_ttl_s=float(config.get("cache.idle_ttl_s")),
            on_stale=self._stale_session,
        )
        self.providers = ProviderRegistry()
        #: Gateway-wide health of every provider and model: shared by every session's runs.
        self.health = ModelHealth(self.hooks.on_health_change)
        self._prober = ActiveProber(self.health, self.providers)
        self.health.on_open = self._prober.schedule
        self.shared_health = SharedHealth(self.health)  # active on a store several share
        self.tools = ToolRegistry()
        self.commands = CommandRegistry()
        self.platforms = PlatformRegistry()
        self.mcp = MCPRegistry()
        # MCP servers belong to the gateway, never to an agent: one pool shared by all agents.
        self.mcp_pool = MCPPool()
        self.tools.add_source(self.mcp_pool)
        # Servers may sample the gateway's model chain and ask its platforms' users.
        self.mcp_pool.services.models = GatewayModels(
            self.providers, lambda: [self.config.model, *self.config.fallbacks]
        )
        #: Platforms that can ask their users register here (see hermes_core.mcp.asking).
        self.askers = self.mcp_pool.services.askers
        self.cache = AgentCache(
            max_agents=config.get("cache.max_agents"),
            idle_ttl_s=float(config.get("cache.idle_ttl_s")),
            on_evict=self._notify_evicted,
        )
        services = AgentServices(self.hooks, self.providers, self.tools, self.health)
        self.agents = AgentFactory(config, services, self.sessions, self.cache)
        # The agent each session's current run uses, between agent_run and post_run.
        self._run_agents: dict[str, Agent] = {}
        self._streams: set[asyncio.Task[None]] = set()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweeper: asyncio.Task[None] | None = None
        self.started = False
        #: Set by :meth:`configure`: every declared setting, the platforms to start, and the
        #: settings nobody declared.
        self.settings_schema = core_registry()
        self.platform_plan = PlatformPlan([], [], [])
        self.unknown_settings: list[Unknown] = []

    @property
    def store(self) -> Store:
        """The transcript store (owned by :attr:`sessions`)."""
        return self.sessions.store

    def plugin_settings(self, name: str) -> Mapping[str, Any]:
        """The settings table of plugin ``name`` (``circuit_breaker`` → ``[circuit_breaker]``),
        validated, with the defaults it declared; empty when it has none."""
        return self.config.section(name)

    def plugin(self, name: str) -> object | None:
        """The plugin registered as ``name`` (its module, for built-ins), or None when it is
        disabled or absent: how one plugin uses another's public API."""
        plugin: object | None = self.host.pm.get_plugin(name)
        return plugin

    # --- lifecycle -----------------------------------------------------------------------

    async def configure(self, *, collect_errors: bool = False) -> list[ConfigError]:
        """Collect every plugin's registrations and check them and the settings.

        The settings schema is completed first (``register_settings``), then checked; unknown
        keys are logged as warnings. Starts no process and touches no file, so ``hermes-core
        config check`` stops here. The first problem raises, unless ``collect_errors``: then
        each problem found is returned (``doctor`` reports them all) and what is valid is
        still configured.
        """
        return await configure_gateway(self, collect_errors=collect_errors)

    async def start(self) -> None:
        """Configure, open the store, start what is eager, and fire ``startup``."""
        await self.configure()
        await self.store.open()
        await self.shared_health.start(self.store)
        await self.mcp_pool.open(state_dir(self.config))
        if self.mcp_pool.settings.eager:
            self.mcp_pool.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="hermes-core cache sweeper")
        self.started = True
        await self.hooks.startup()

    async def stop(self, grace_s: float = 30.0) -> None:
        """Wait (up to ``grace_s``) for runs in flight, then release everything."""
        if not self.started:
            return
        self.started = False
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            logger.warning("stopping with {} run(s) still in flight", self._inflight)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.hooks.shutdown()
        self.cache.clear("shutdown")
        await self.cache.flush()
        await self.mcp_pool.stop()
        await self._prober.aclose()  # before the providers its probes use are closed
        await self.providers.aclose()
        await self.shared_health.stop()
        await self.store.close()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _sweep(self) -> None:
        interval = min(SWEEP_INTERVAL_S, max(self.cache.idle_ttl_s / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            self.sessions.evict_idle()
            if self.cache.evict_idle():
                await self.cache.flush()

    # --- messages ------------------------------------------------------------------------

    async def handle(self, message: Message) -> Reply:
        """Serve one inbound message: a slash command or an agent run. Never raises."""
        self._inflight += 1
        self._idle.clear()
        request = message.request
        try:
            stateless = request is not None and request.stateless
            # A stateless run's session is its own: nobody else can hold it.
            async with (
                contextlib.nullcontext() if stateless else self.sessions.hold(message.session_key)
            ):
                try:
                    session = await self.sessions.for_message(message)
                except Exception as error:  # the store failed: answer, never raise
                    logger.opt(exception=error).error(
                        "cannot load session {!r}: {}", message.session_key, error
                    )
                    return crash_reply(error, time.perf_counter())
                reply = await self._serve(session, message, save=request is None or request.record)
            # Evictions are announced outside the session lock: teardown never blocks a run.
            await self.cache.flush()
            return reply
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _serve(self, session: Session, message: Message, *, save: bool) -> Reply:
        session.user_id = message.user_id
        session.last_active = time.time()
        parsed = self.commands.parse(message.text)
        if parsed is not None:
            reply = await self._run_command(session, message, *parsed)
        else:
            result = scrubbed(await self._run(session, message))
            reply = Reply(result["final_response"] or "", result)
        if save:
            try:
                await self.sessions.save(session)
            except Exception as error:  # the reply is ready: deliver it all the same
                logger.opt(exception=error).error(
                    "cannot save session {!r}: {}", session.key, error
                )
        return reply

    async def stream(self, message: Message) -> AsyncIterator[RunEvent]:
        """Serve ``message`` as :meth:`handle` does, yielding its run's events as they happen
        (see :mod:`hermes_core.events`); the last one is :class:`RunFinished`, with the reply.

        The text deltas add up to the reply's text: what was not streamed (a command's
        answer, a plugin's, a failure's explanation) comes as one last delta. The message is
        served to its end, and stored, even when the consumer stops listening early.
        """
        queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        task = asyncio.create_task(self._serve_streamed(message, queue.put_nowait))
        self._streams.add(task)  # owned here until it ends; stop() waits for it via handle()
        task.add_done_callback(self._streams.discard)
        async for event in until_finished(queue):
            yield event

    async def _serve_streamed(self, message: Message, put: Callable[[RunEvent], None]) -> None:
        sent: list[str] = []

        def sink(event: RunEvent) -> None:
            if isinstance(event, TextDelta):
                sent.append(event.text)
            put(event)

        current_sink.set(sink)  # this task's context only: the run and the tasks it starts
        reply = await self.handle(message)
        streamed = "".join(sent)
        if reply.text.startswith(streamed) and len(reply.text) > len(streamed):
            put(TextDelta(reply.text[len(streamed) :]))
        put(RunFinished(reply))

    async def session(self, key: str, platform: str) -> Session:
        """The session ``key``, loaded from the store or created."""
        return await self.sessions.get(key, platform)

    async def _run_command(self, session: Session, message: Message, name: str, args: str) -> Reply:
        command = self.commands.commands.get(name)
        if command is None:
            return Reply(f"Unknown command {name}. Send /help for the list.", command=name)
        try:
            text = await command(CommandContext(self, session, message, args))
        except Exception as error:
            logger.opt(exception=error).error("command {} failed: {}", name, error)
            text = f"The command {name} failed: {error}"
        return Reply(text, command=name)

    async def run_in_session(self, session: Session, message: Message) -> RunResult:
        """Run the agent on ``message`` as :meth:`handle` runs a message that is no command
        (hooks, store), for a command that starts a run (``/prompt``): it holds the session."""
        return scrubbed(await self._run(session, message))

    async def _run(self, session: Session, message: Message) -> RunResult:
        started = time.perf_counter()
        try:
            if streaming():  # the event costs a model-chain lookup: only when someone listens
                emit(RunStarted(session.key, str(self.models_for(session)[0])))
            with running_session(session):  # whose user an MCP server's question is for
                result = await self.hooks.agent_run(session, message)
            if result is None:
                raise RuntimeError("no plugin answered agent_run")
        except Exception as error:  # a plugin's agent_run (the built-in one never raises)
            logger.opt(exception=error).error(
                "run for session {} crashed: {}: {}", session.key, type(error).__name__, error
            )
            result = internal_failure(error, started, kept=True)
        agent = self._run_agents.pop(session.key, None)
        await self.hooks.post_run(session, agent, result, self.cache)
        return result

    async def execute_run(self, session: Session, message: Message) -> RunResult:
        """The built-in run (``agent_run``): commit the user's message, ask ``pre_run``, run
        the agent, commit the result, and only then add the turn to the agent's history."""
        started = time.perf_counter()
        request = message.request or RunRequest()
        resume, record = request.resume, request.record
        run_id = resume.run_id if resume else new_id()
        user_message = (
            resume.user_message if resume else written(request.opening_line(message.text))
        )
        try:
            # Committed before anything else happens: neither a crash nor a refusal by a
            # pre_run plugin (the circuit breaker) can lose the user's message. A resumed
            # run's message is committed already.
            if record and resume is None:
                await self.sessions.begin_run(session, run_id, user_message)
        except Exception as error:
            logger.opt(exception=error).error(
                "cannot store the message of session {}: {}", session.key, error
            )
            return internal_failure(error, started, kept=False)
        agent: Agent | None = None
        try:
            result = await self.hooks.pre_run(session, message)
            if result is None:
                agent = await self.agents.for_run(session, request)
                self._run_agents[session.key] = agent
                self.cache.acquire(session.key)
                try:
                    result, added = await agent.run(session, message.text, request)
                finally:
                    self.cache.release(session.key)
            else:  # a plugin's answer is part of the conversation, unless it is a failure
                added = [{"role": "assistant", "content": result["final_response"]}]
            answered = None if result["failed"] else [written(m) for m in added]
            # Waiting for the client's tool results: the turn stays out of the store's
            # history (its run pending) and of the agent's until the run is resumed.
            if request.suspend(session.key, run_id, user_message, answered):
                return result
            if record:
                await self.sessions.finish_run(
                    session, FinishedRun(run_id, answered, result["model"])
                )
        except Exception as error:
            logger.opt(exception=error).error(
                "run for session {} crashed: {}: {}", session.key, type(error).__name__, error
            )
            with contextlib.suppress(Exception):
                if record:
                    await self.sessions.finish_run(session, FinishedRun(run_id, None))
            return internal_failure(error, started, agent, kept=True)
        if answered is not None and (keeper := agent or self.cache.peek(session.key)):
            keeper.history.extend([user_message, *answered])
        return result

    # --- agents --------------------------------------------------------------------------
    def models_for(self, session: Session) -> list[ModelRef]:
        """The session's model chain (:func:`hermes_core.agent_factory.model_chain`)."""
        return model_chain(self.config, session)

    def _stale_session(self, key: str) -> None:
        # Another process ran the session since this agent was made: its history is old.
        self.cache.evict(key, "stale")

    async def _notify_evicted(self, key: str, agent: Agent, reason: str) -> None:
        # Counted by the metrics plugin (hermes_evictions_total); a line each is for debugging.
        logger.debug("evicted agent of session {} ({})", key, reason)
        await self.hooks.on_evict(key, agent, reason)

    def reset_session(self, session: Session, reason: str = "reset") -> None:
        """Start a fresh conversation: new history, plugin state cleared, agent evicted.
        The old conversation stays in the store."""
        session.conversation += 1
        session.data.clear()
        self.cache.evict(session.key, reason)

    def status(self) -> dict[str, Any]:
        return {
            "cached_agents": len(self.cache),
            "sessions": len(self.sessions),
            "runs_in_flight": self._inflight,
        }
