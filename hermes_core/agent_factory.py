"""Which agent runs a session's message: the session's model chain, and its cached agent or
a new one (a stateless run's own, never cached)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loguru import logger

from hermes_core.agent import Agent, AgentServices
from hermes_core.cache import AgentCache
from hermes_core.run_request import RunRequest
from hermes_core.sessions import Sessions
from hermes_core.settings import Config, ModelRef
from hermes_core.types import Session


def model_chain(config: Config, session: Session) -> list[ModelRef]:
    """The session's model chain: its ``/model`` choice or ``agent.model``, then fallbacks.

    A stored choice whose provider is no longer configured (the settings changed since) is
    ignored, so the session falls back to ``agent.model`` instead of failing every run.
    """
    primary = config.model
    if session.model:
        choice = ModelRef.parse(session.model, "/model")
        if choice.provider in config.providers:
            primary = choice
        else:
            logger.warning(
                "session {}: /model {} names no configured provider; using {}",
                session.key,
                choice,
                primary,
            )
    return [primary, *(ref for ref in config.fallbacks if ref != primary)]


@dataclass(eq=False)
class AgentFactory:
    """Builds agents from the settings, over the gateway-wide services."""

    config: Config
    services: AgentServices
    sessions: Sessions
    cache: AgentCache

    async def for_run(self, session: Session, request: RunRequest) -> Agent:
        """The session's cached agent, or a new one from its stored history; a stateless
        run's agent is its own, never cached, and starts from the request's messages."""
        if request.stateless:
            return self._new(session, [])
        agent = self.cache.get(session.key)
        if agent is None:
            limit = int(self.config.get("agent.max_history_messages"))
            agent = self._new(session, await self.sessions.history(session, limit))
            self.cache.put(session.key, agent)
        return agent

    def _new(self, session: Session, history: list[dict[str, Any]]) -> Agent:
        agent = Agent(
            session.key,
            model_chain(self.config, session),
            history,
            self.services,
            system_prompt=str(self.config.get("agent.system_prompt") or ""),
            max_tool_rounds=int(self.config.get("agent.max_tool_rounds")),
            max_history_messages=int(self.config.get("agent.max_history_messages")),
        )
        logger.debug("created {}", agent)
        return agent
