"""Built-in ``tracing``: OpenTelemetry spans for each run, LLM request and tool call.

Each run is a ``hermes.run`` span; its LLM requests (``hermes.llm_request``) and tool calls
(``hermes.tool_call``) are its children. hermes-core only calls the OpenTelemetry *API*: the
spans go wherever the application's tracer provider sends them (``opentelemetry-instrument``,
or a plugin that sets one up in ``startup``), and nowhere when none is configured. Without the
``opentelemetry-api`` package the plugin does nothing; it imports the API when the gateway
starts, never at plugin load. See docs/observability.md.

The run span comes from an ordinary ``agent_run`` wrapper: made current before the run (so
the other plugins' ``pre_run`` decisions and the tool-call tasks the run starts are inside
it), ended with the run's result. LLM requests and tool calls are recorded when they have
ended (``on_llm_request``, ``post_tool_call``), with their measured start and end times, as
children of the run span current on their task.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    #: Whether an application has set a tracer provider: until one does, every span would be
    #: a non-recording one, so the hooks skip the span and its context switch altogether.
    configured: Callable[[], bool]


@functools.cache
def otel() -> _OTel | None:
    """The OpenTelemetry API, or ``None`` when ``opentelemetry-api`` is not installed."""
    try:
        from opentelemetry import context, trace
    except ImportError:
        return None
    unset = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    return _OTel(
        tracer=trace.get_tracer("hermes_core", __version__),
        attach=context.attach,
        detach=context.detach,
        in_context=trace.set_span_in_context,
        error=trace.StatusCode.ERROR,
        configured=lambda: not isinstance(trace.get_tracer_provider(), unset),
    )


def _recording() -> _OTel | None:
    """The API when spans go somewhere, else ``None``."""
    api = otel()
    return api if api is not None and api.configured() else None


@hookimpl(trylast=True)
def startup() -> None:
    otel()  # import the API now rather than in the first user's run


@hookimpl(wrapper=True, tryfirst=True)
def agent_run(session: Session, message: Message) -> Generator[None, RunResult, RunResult]:
    if (api := _recording()) is None:
        return (yield)
    span = api.tracer.start_span(
        RUN_SPAN,
        attributes={
            "hermes.session.key": session.key,
            "hermes.platform": session.platform,
            "hermes.message.id": message.id,
        },
    )
    token = api.attach(api.in_context(span))
    try:
        result = yield
    except BaseException as error:
        span.set_status(api.error, f"{type(error).__name__}: {error}")
        raise
    else:
        _describe_run(api, span, result)
        return result
    finally:
        api.detach(token)
        span.end()


def _describe_run(api: _OTel, span: Span, result: RunResult) -> None:
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


@hookimpl(trylast=True)
def on_llm_request(
    session: Session, model: str, duration_s: float, error_kind: ErrorKind | None
) -> None:
    if (api := _recording()) is None:
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


@hookimpl(trylast=True)
def post_tool_call(session: Session, tool: str, result: str, duration_s: float) -> None:
    if (api := _recording()) is None:
        return
    ended = time.time_ns()
    span = api.tracer.start_span(
        TOOL_SPAN,
        attributes={"hermes.session.key": session.key, "gen_ai.tool.name": tool},
        start_time=ended - int(duration_s * 1e9),
    )
    failed = result.startswith("error:")  # the core's and MCP's failure texts all start so
    span.set_attributes({"hermes.tool.error": failed, "hermes.tool.result_chars": len(result)})
    if failed:
        span.set_status(api.error, result.splitlines()[0][:200])
    span.end(end_time=ended)
