"""The gateway: turns inbound messages into serialized per-session runs, with hooks around each.

Runs of one session happen one at a time, in arrival order (``asyncio.Lock`` wakes waiters
first-in first-out); different sessions run concurrently. Nothing a run does can raise into a
platform: every failure becomes a RunResult with ``failed=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from loguru import logger

from hermes_core.agent import Agent, AgentServices, failure_text
from hermes_core.cache import AgentCache
from hermes_core.commands import CommandContext, CommandRegistry
from hermes_core.errors import ConfigError
from hermes_core.hooks import Hooks
from hermes_core.manager import PluginHost
from hermes_core.mcp import MCPRegistry
from hermes_core.mcp.pool import MCPPool
from hermes_core.mcp.settings import PoolSettings, register_mcp_settings
from hermes_core.platform_settings import PlatformPlan, plan_platforms, register_platform_settings
from hermes_core.platforms import PlatformRegistry
from hermes_core.providers import ProviderRegistry
from hermes_core.settings import Config, ModelRef, apply_schema, core_registry
from hermes_core.settings.schema import Unknown
from hermes_core.store import Store, store_from_config
from hermes_core.tools import ToolRegistry
from hermes_core.types import Message, Reply, RunResult, Session, make_result

#: How often idle agents are looked for, at most.
SWEEP_INTERVAL_S = 30.0


class Gateway:
    """One process's run loop: sessions, the agent cache, and the registries plugins fill."""

    def __init__(
        self, config: Config, host: PluginHost | None = None, *, store: Store | None = None
    ) -> None:
        self.config = config
        if host is None:
            host = PluginHost()
            host.load(config.disabled_plugins)
        self.host = host
        self.hooks = Hooks(host.pm)
        self.store: Store = store if store is not None else store_from_config(config)
        self.providers = ProviderRegistry()
        self.tools = ToolRegistry()
        self.commands = CommandRegistry()
        self.platforms = PlatformRegistry()
        self.mcp = MCPRegistry()
        # MCP servers belong to the gateway, never to an agent: one pool shared by all agents.
        self.mcp_pool = MCPPool()
        self.tools.add_source(self.mcp_pool)
        self.cache = AgentCache(
            max_agents=config.get("cache.max_agents"),
            idle_ttl_s=float(config.get("cache.idle_ttl_s")),
            on_evict=self._notify_evicted,
        )
        self._sessions: dict[str, Session] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
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

    # --- lifecycle -----------------------------------------------------------------------

    async def configure(self, *, collect_errors: bool = False) -> list[ConfigError]:
        """Collect every plugin's registrations and check them and the settings.

        The settings schema is completed first (``register_settings``), then checked; unknown
        keys are logged as warnings. Starts no process and touches no file, so ``hermes-core
        config check`` stops here. The first problem raises, unless ``collect_errors``: then
        each problem found is returned (``doctor`` reports them all) and what is valid is
        still configured.
        """
        errors: list[ConfigError] = []

        def keep(error: ConfigError) -> None:
            if not collect_errors:
                raise error
            if str(error) not in map(str, errors):  # the schema and a server spec may agree
                errors.append(error)

        @contextlib.contextmanager
        def step() -> Iterator[None]:
            try:
                yield
            except ConfigError as error:
                keep(error)

        hooks = self.hooks
        schema = core_registry()
        register_mcp_settings(schema)
        register_platform_settings(schema)
        with step():
            await hooks.register("register_settings", schema.register)
        self.settings_schema = schema
        for error in apply_schema(self.config, schema):
            keep(error)
        self.unknown_settings = schema.unknown(self.config.raw)
        for unknown in self.unknown_settings:
            logger.warning("{}", unknown)
        for hook, register in (
            ("register_providers", self.providers.register),
            ("register_tools", self.tools.register),
            ("register_commands", self.commands.register),
            ("register_platforms", self.platforms.register),
        ):
            with step():
                await hooks.register(hook, register)
        with step():
            await hooks.register_per_plugin("register_mcp_servers", self.mcp.registrar)
        for name, values in self.config.section("mcp.servers").items():
            with step():
                self.mcp.apply_settings({name: values})
        pool_settings = PoolSettings()
        with step():
            pool_settings = PoolSettings.from_mapping(self.config.section("mcp"))
        self.mcp_pool.configure(self.mcp.specs, pool_settings)
        with step():
            self.providers.configure(self.config.providers)
        self.platform_plan = plan_platforms(self.config, list(self.platforms.factories))
        for error in self.platform_plan.errors:
            keep(error)
        return errors

    async def start(self) -> None:
        """Configure, open the store, start what is eager, and fire ``startup``."""
        await self.configure()
        await self.store.open()
        if self.mcp_pool.settings.eager:
            self.mcp_pool.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="hermes-core cache sweeper")
        self.started = True
        await self.hooks.startup(self)

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
        await self.hooks.shutdown(self)
        self.cache.clear("shutdown")
        await self.cache.flush()
        await self.mcp_pool.stop()
        await self.providers.aclose()
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
            if self.cache.evict_idle():
                await self.cache.flush()

    # --- messages ------------------------------------------------------------------------

    async def handle(self, message: Message) -> Reply:
        """Serve one inbound message: a slash command or an agent run. Never raises."""
        self._inflight += 1
        self._idle.clear()
        try:
            async with self._session_lock(message.session_key):
                try:
                    session = await self.session(message.session_key, message.platform)
                except Exception as error:  # the store failed: answer, never raise
                    logger.opt(exception=error).error(
                        "cannot load session {!r}: {}", message.session_key, error
                    )
                    return _crash_reply(error, time.perf_counter())
                session.user_id = message.user_id
                session.last_active = time.time()
                parsed = self.commands.parse(message.text)
                if parsed is not None:
                    reply = await self._run_command(session, message, *parsed)
                else:
                    result = await self._run(session, message)
                    reply = Reply(result["final_response"] or "", result)
                try:
                    await self.store.save_session(session)
                except Exception as error:  # the reply is ready: deliver it all the same
                    logger.opt(exception=error).error(
                        "cannot save session {!r}: {}", session.key, error
                    )
            # Evictions are announced outside the session lock: teardown never blocks a run.
            await self.cache.flush()
            return reply
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def _session_lock(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]  # no waiter left: do not keep a lock per session forever
            else:
                self._locks[key] = (lock, users - 1)

    async def session(self, key: str, platform: str) -> Session:
        """The session ``key``, loaded from the store or created."""
        session = self._sessions.get(key)
        if session is None:
            session = await self.store.load_session(key) or Session(key=key, platform=platform)
            session.config = self.config
            self._sessions[key] = session
        return session

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

    async def _run(self, session: Session, message: Message) -> RunResult:
        started = time.perf_counter()
        agent: Agent | None = None
        run_id = uuid.uuid4().hex
        user_message = {"role": "user", "content": message.text}
        begun = False
        try:
            # Committed before anything else happens: neither a crash nor a refusal by a
            # pre_run plugin (the circuit breaker) can lose the user's message.
            await self.store.begin_run(session, run_id, user_message)
            begun = True
            result = await self.hooks.pre_run(session, message)
            if result is None:
                agent = self.cache.get(session.key) or await self._create_agent(session)
                self.cache.acquire(session.key)
                try:
                    result, added = await agent.run(session, message.text)
                finally:
                    self.cache.release(session.key)
            else:
                added = [user_message, {"role": "assistant", "content": result["final_response"]}]
                cached = self.cache.peek(session.key)
                if not result["failed"] and cached is not None:
                    cached.history.extend(added)  # a plugin's answer is part of the conversation
            await self.store.finish_run(
                session, run_id, None if result["failed"] else added, result["model"]
            )
        except Exception as error:
            logger.opt(exception=error).error(
                "run for session {} crashed: {}: {}", session.key, type(error).__name__, error
            )
            result = _internal_failure(error, started, agent)
            if begun:
                with contextlib.suppress(Exception):
                    await self.store.finish_run(session, run_id, None)
        await self.hooks.post_run(session, agent, result, self.cache)
        return result

    # --- agents --------------------------------------------------------------------------

    def models_for(self, session: Session) -> list[ModelRef]:
        """The session's model chain: its ``/model`` choice or ``agent.model``, then fallbacks.

        A stored choice whose provider is no longer configured (the settings changed since) is
        ignored, so the session falls back to ``agent.model`` instead of failing every run.
        """
        primary = self.config.model
        if session.model:
            choice = ModelRef.parse(session.model, "/model")
            if choice.provider in self.config.providers:
                primary = choice
            else:
                logger.warning(
                    "session {}: /model {} names no configured provider; using {}",
                    session.key,
                    choice,
                    primary,
                )
        return [primary, *(ref for ref in self.config.fallbacks if ref != primary)]

    async def _create_agent(self, session: Session) -> Agent:
        limit = int(self.config.get("agent.max_history_messages"))
        agent = Agent(
            session.key,
            self.models_for(session),
            await self.store.history(session, limit),
            AgentServices(self.hooks, self.providers, self.tools),
            system_prompt=str(self.config.get("agent.system_prompt") or ""),
            max_tool_rounds=int(self.config.get("agent.max_tool_rounds")),
            max_history_messages=limit,
        )
        self.cache.put(session.key, agent)
        logger.debug("created {}", agent)
        return agent

    async def _notify_evicted(self, key: str, agent: Agent, reason: str) -> None:
        logger.info("evicted agent of session {} ({})", key, reason)
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
            "sessions": len(self._sessions),
            "runs_in_flight": self._inflight,
        }


def _internal_failure(error: Exception, started: float, agent: Agent | None = None) -> RunResult:
    """The RunResult of a run that crashed: the user gets an apology, never a traceback."""
    return make_result(
        failed=True,
        error=f"{type(error).__name__}: {error}",
        error_kind="internal",
        final_response=failure_text("internal", str(error)),
        model=str(agent.models[0]) if agent else None,
        primary_model=str(agent.models[0]) if agent else None,
        duration_s=time.perf_counter() - started,
    )


def _crash_reply(error: Exception, started: float) -> Reply:
    result = _internal_failure(error, started)
    return Reply(result["final_response"] or "", result)
