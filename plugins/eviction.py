"""Built-in ``eviction`` policy: after a run that succeeded *on a fallback model*, evict the
session's agent so the next message starts again from the primary model.

A failed run never evicts: recreating the agent would change nothing but cost a rebuild, which
is how a failing session once respawned its MCP servers on every message.
"""

from __future__ import annotations

from hermes_core import hookimpl
from hermes_core.cache import AgentCache
from hermes_core.types import RunResult, Session

REASON = "fallback_succeeded"


@hookimpl(trylast=True)
def post_run(session: Session, result: RunResult, cache: AgentCache) -> None:
    if result["fallback_used"] and not result["failed"] and session.key in cache:
        cache.evict(session.key, REASON)
