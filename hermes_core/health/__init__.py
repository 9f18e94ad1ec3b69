"""Model health: gateway-wide breakers that let a run skip a provider or model that is down.

:mod:`.breaker` is the pure state machine (closed, open, half-open), :mod:`.outcomes` says
what a request's outcome means for its provider and its model, :mod:`.registry` holds the
breakers of one gateway and :mod:`.prober` sends the gateway's own probes
(``probe = "active"``). docs/failure-handling.md describes the behaviour.
"""

from hermes_core.health.breaker import BreakerPolicy, State
from hermes_core.health.registry import ModelHealth, Skip

__all__ = ["BreakerPolicy", "ModelHealth", "Skip", "State"]
