"""hermes-core plugin ``evict_always``: evict the session's agent after every run.

This is the naive policy hermes-core's built-in ``eviction`` replaced: rebuilding the agent after
a failed run changes nothing but costs a rebuild (and its MCP connections). It is kept as the
worked example of replacing a built-in policy, and as a baseline for benchmarks. Install it and
set ``plugins.disabled = ["eviction"]``.
"""

from __future__ import annotations

from hermes_core import hookimpl
from hermes_core.cache import AgentCache
from hermes_core.types import Session

REASON = "evict_always"


@hookimpl
def post_run(session: Session, cache: AgentCache) -> None:
    """After every run, failed or not, drop the session's cached agent."""
    cache.evict(session.key, REASON)
