"""Built-in ``agent``: the default implementation of ``agent_run``, the gateway's run loop.

It is an essential plugin (always registered, never disabled): without an ``agent_run``
implementation no message could be answered. It is ``trylast``, so a plugin that returns a
RunResult from ``agent_run`` replaces the run loop, and wrappers see every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hermes_core import hookimpl

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.types import Message, RunResult, Session


@hookimpl(trylast=True)
async def agent_run(session: Session, message: Message, gateway: Gateway) -> RunResult:
    return await gateway.execute_run(session, message)
