"""Built-in ``tracing``: OpenTelemetry spans for each run, LLM request and tool call.

Each run is a ``hermes.run`` span; its LLM requests (``hermes.llm_request``) and tool calls
(``hermes.tool_call``) are its children. hermes-core only calls the OpenTelemetry *API*: the
spans go wherever the application's tracer provider sends them (``opentelemetry-instrument``,
or a plugin that sets one up in ``startup``), and nowhere when none is configured. Without the
``opentelemetry-api`` package the plugin does nothing; it imports the API when the gateway
starts, never at plugin load. See docs/observability.md.

The run span is made current in ``pre_run`` (which is ``tryfirst`` and never decides anything,
so the span covers the other plugins' decisions too) and ended in ``post_run``; both run on the
run's task, so a context variable carries the span between them, and the tool-call tasks the
run starts inherit it as their parent. The same goes for a tool call between ``pre_tool_call``
and ``post_tool_call``, on that call's own task. An LLM request is recorded when it has ended
(``on_llm_request``), with its measured start and end times.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hermes_core import __version__, hookimpl

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, StatusCode, Tracer

    from hermes_core.types import ErrorKind, Message, RunResult, Session

NAME = "tracing"
RUN_SPAN = "hermes.run"
LLM_SPAN = "hermes.llm_request"
TOOL_SPAN = "hermes.tool_call"


@dataclass(frozen=True)
class _OTel:
    """The few OpenTelemetry API functions the hooks use, imported once."""

    tracer: Tracer
    attach: Callable[[Context], Token[Context]]
    detach: Callable[[Token[Context]], None]
    in_context: Callable[[Span], Context]
    error: StatusCode


@dataclass(frozen=True)
class _Open:
    """A span made current on this task, and the token that restores the previous one."""

    span: Span
    token: Token[Context]


_run: ContextVar[_Open | None] = ContextVar("hermes_core_tracing_run", default=None)
_tool: ContextVar[_Open | None] = ContextVar("hermes_core_tracing_tool", default=None)


@functools.cache
def otel() -> _OTel | None:
    """The OpenTelemetry API, or ``None`` when ``opentelemetry-api`` is not installed."""
    try:
        from opentelemetry import context, trace
    except ImportError:
        return None
    return _OTel(
        tracer=trace.get_tracer("hermes_core", __version__),
        attach=context.attach,
        detach=context.detach,
        in_context=trace.set_span_in_context,
        error=trace.StatusCode.ERROR,
    )


def _open(api: _OTel, name: str, attributes: dict[str, Any]) -> _Open:
    span = api.tracer.start_span(name, attributes=attributes)
    return _Open(span, api.attach(api.in_context(span)))


def _close(api: _OTel, var: ContextVar[_Open | None]) -> Span | None:
    """End the current task's hold on the span in ``var``; the span itself is returned."""
    opened = var.get()
    if opened is None:
        return None
    var.set(None)
    api.detach(opened.token)
    return opened.span


def _ago_ns(seconds: float) -> int:
    return time.time_ns() - int(seconds * 1e9)


@hookimpl(trylast=True)
def startup() -> None:
    otel()  # import the API now rather than in the first user's run


@hookimpl(tryfirst=True)
def pre_run(session: Session, message: Message) -> None:
    if (api := otel()) is None:
        return
    attributes = {
        "hermes.session.key": session.key,
        "hermes.platform": session.platform,
        "hermes.message.id": message.id,
    }
    _run.set(_open(api, RUN_SPAN, attributes))


@hookimpl(trylast=True)
def post_run(session: Session, result: RunResult) -> None:
    if (api := otel()) is None:
        return
    span = _close(api, _run)
    if span is None:  # the run crashed before pre_run: record it after the fact
        span = api.tracer.start_span(
            RUN_SPAN,
            attributes={"hermes.session.key": session.key, "hermes.platform": session.platform},
            start_time=_ago_ns(result["duration_s"]),
        )
    span.set_attributes(
        {
            "hermes.fallback_used": result["fallback_used"],
            "hermes.api_calls": result["api_calls"],
            "hermes.tool_calls": result["tool_calls"],
            "hermes.failed": result["failed"],
        }
    )
    if result["model"] is not None:
        span.set_attribute("hermes.model", result["model"])
    if result["primary_model"] is not None:
        span.set_attribute("hermes.primary_model", result["primary_model"])
    if result["failed"]:
        span.set_attribute("hermes.error_kind", result["error_kind"] or "internal")
        span.set_status(api.error, result["error"])
    span.end()


@hookimpl(trylast=True)
def on_llm_request(
    session: Session, model: str, duration_s: float, error_kind: ErrorKind | None
) -> None:
    if (api := otel()) is None:
        return
    ended = time.time_ns()
    span = api.tracer.start_span(
        LLM_SPAN,
        attributes={
            "hermes.session.key": session.key,
            "hermes.model": model,
            "gen_ai.request.model": model.partition(":")[2],
        },
        start_time=ended - int(duration_s * 1e9),
    )
    if error_kind is not None:
        span.set_attribute("hermes.error_kind", error_kind)
        span.set_status(api.error, error_kind)
    span.end(end_time=ended)


@hookimpl(tryfirst=True)
def pre_tool_call(session: Session, tool: str) -> None:
    if (api := otel()) is None:
        return
    attributes = {"hermes.session.key": session.key, "gen_ai.tool.name": tool}
    _tool.set(_open(api, TOOL_SPAN, attributes))


@hookimpl(trylast=True)
def post_tool_call(session: Session, tool: str, result: str) -> None:
    if (api := otel()) is None:
        return
    span = _close(api, _tool)
    if span is None:  # refused before pre_tool_call (unknown tool, undecodable arguments)
        span = api.tracer.start_span(
            TOOL_SPAN, attributes={"hermes.session.key": session.key, "gen_ai.tool.name": tool}
        )
    failed = result.startswith("error:")  # the core's and MCP's failure texts all start so
    span.set_attributes({"hermes.tool.error": failed, "hermes.tool.result_chars": len(result)})
    if failed:
        span.set_status(api.error, result.splitlines()[0][:200])
    span.end()
