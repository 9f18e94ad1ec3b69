"""The built-in ``tracing`` plugin: OpenTelemetry spans recorded by the SDK's in-memory
exporter, for runs through a real gateway against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hermes_core import hookimpl
from hermes_core.plugins import tracing
from hermes_core.testing import FakeOpenAI, send, settings_for


class Stamp:
    """A ``register_tools`` tool the ``tool-*`` models can call."""

    @hookimpl
    def register_tools(self, register: Any) -> None:
        register("stamp", lambda arguments: f"stamped {arguments.get('n')}", "Stamp a number.")


class Switch(SpanProcessor):
    """Exports ended spans while :attr:`on`: the provider is process-wide, the test is not."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.on = False
        self._inner = SimpleSpanProcessor(exporter)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self._inner.on_end(span)


@pytest.fixture(scope="session")
def exporter() -> tuple[InMemorySpanExporter, Switch]:
    """An in-memory exporter on the global tracer provider (set once per process)."""
    memory = InMemorySpanExporter()
    switch = Switch(memory)
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(switch)
    return memory, switch


@pytest.fixture
def spans(exporter: tuple[InMemorySpanExporter, Switch]) -> Iterator[InMemorySpanExporter]:
    """The exporter, empty, recording for this test only."""
    memory, switch = exporter
    memory.clear()
    switch.on = True
    yield memory
    switch.on = False
    memory.clear()


def hermes_spans(memory: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """The finished spans called ``name``, by start time."""
    found = [span for span in memory.get_finished_spans() if span.name == name]
    return sorted(found, key=lambda span: span.start_time or 0)


def children(memory: InMemorySpanExporter, parent: ReadableSpan, name: str) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in hermes_spans(memory, name)
        if span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and span.context is not None
        and span.context.trace_id == parent.context.trace_id
    ]


async def test_run_span_has_llm_and_tool_call_children(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    register_plugin(Stamp(), "stamp")
    gateway = await make_gateway(settings_for(fake_openai.url, "bad-primary", ["tool-fb"]))
    reply = await send(gateway, "call-many stamp stamp", "test:tree")
    assert reply.text == "tool results: stamped None | stamped None"

    [run] = hermes_spans(spans, tracing.RUN_SPAN)
    assert run.parent is None
    assert run.attributes is not None and dict(run.attributes) == {
        "hermes.session.key": "test:tree",
        "hermes.platform": "test",
        "hermes.message.id": run.attributes["hermes.message.id"],
        "hermes.model": "local:tool-fb",
        "hermes.primary_model": "local:bad-primary",
        "hermes.fallback_used": True,
        "hermes.api_calls": 3,
        "hermes.tool_calls": 2,
        "hermes.failed": False,
    }
    assert run.status.status_code is StatusCode.UNSET

    llm = children(spans, run, tracing.LLM_SPAN)
    assert [span.attributes and span.attributes["hermes.model"] for span in llm] == [
        "local:bad-primary",
        "local:tool-fb",
        "local:tool-fb",
    ]
    assert llm[0].attributes is not None
    assert llm[0].attributes["hermes.error_kind"] == "non_retryable"
    assert llm[0].attributes["gen_ai.request.model"] == "bad-primary"
    assert llm[0].status.status_code is StatusCode.ERROR
    assert all(span.status.status_code is StatusCode.UNSET for span in llm[1:])

    tools = children(spans, run, tracing.TOOL_SPAN)
    assert len(tools) == 2 == len(hermes_spans(spans, tracing.TOOL_SPAN))
    for tool in tools:
        assert tool.attributes is not None
        assert tool.attributes["gen_ai.tool.name"] == "stamp"
        assert tool.attributes["hermes.tool.error"] is False
        assert tool.attributes["hermes.tool.result_chars"] == len("stamped None")
    # The timeline: the tools ran between the second and the third request, inside the run.
    assert run.start_time is not None and run.end_time is not None
    for span in [*llm, *tools]:
        assert span.start_time is not None and span.end_time is not None
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    assert all(llm[1].end_time <= tool.start_time for tool in tools)  # type: ignore[operator]
    assert all(tool.end_time <= llm[2].start_time for tool in tools)  # type: ignore[operator]


async def test_failed_run_span_carries_its_error_kind(
    make_gateway: Any, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    gateway = await make_gateway(settings_for(fake_openai.url, "auth-primary"))
    reply = await send(gateway, "hi", "test:auth")
    assert reply.result is not None and reply.result["error_kind"] == "auth"

    [run] = hermes_spans(spans, tracing.RUN_SPAN)
    assert run.attributes is not None
    assert run.attributes["hermes.error_kind"] == "auth"
    assert run.attributes["hermes.failed"] is True
    assert run.attributes["hermes.session.key"] == "test:auth"
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == reply.result["error"]
    [llm] = children(spans, run, tracing.LLM_SPAN)
    assert llm.attributes is not None and llm.attributes["hermes.error_kind"] == "auth"


async def test_short_circuited_run_is_a_span_without_children(
    make_gateway: Any, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    settings = settings_for(fake_openai.url, "auth-primary", circuit_breaker={"threshold": 1})
    gateway = await make_gateway(settings)
    await send(gateway, "opens the breaker")
    spans.clear()
    reply = await send(gateway, "answered by the breaker")
    assert reply.result is not None and reply.result["error_kind"] == "circuit_open"

    [run] = hermes_spans(spans, tracing.RUN_SPAN)
    assert run.attributes is not None
    assert run.attributes["hermes.error_kind"] == "circuit_open"
    assert run.attributes["hermes.api_calls"] == 0
    assert "hermes.model" not in run.attributes  # no model was asked
    assert spans.get_finished_spans() == (run,)


async def test_tool_call_refused_before_pre_tool_call_still_gets_a_span(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    register_plugin(Stamp(), "stamp")
    gateway = await make_gateway(settings_for(fake_openai.url, "badtool-model"))
    reply = await send(gateway, "call stamp")
    assert "invalid arguments for tool 'stamp'" in reply.text

    [run] = hermes_spans(spans, tracing.RUN_SPAN)
    [tool] = children(spans, run, tracing.TOOL_SPAN)
    assert tool.attributes is not None and tool.attributes["hermes.tool.error"] is True
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.status.description is not None
    assert tool.status.description.startswith("error: invalid arguments for tool 'stamp'")


async def test_concurrent_runs_keep_their_own_children(
    make_gateway: Any, register_plugin: Any, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    register_plugin(Stamp(), "stamp")
    gateway = await make_gateway(settings_for(fake_openai.url, "tool-model"))
    sessions = [f"test:concurrent-{n}" for n in range(4)]
    await asyncio.gather(*(send(gateway, 'call stamp {"n": 1}', key) for key in sessions))

    runs = hermes_spans(spans, tracing.RUN_SPAN)
    assert sorted(run.attributes["hermes.session.key"] for run in runs if run.attributes) == (
        sessions
    )
    for run in runs:
        assert run.attributes is not None
        key = run.attributes["hermes.session.key"]
        llm = children(spans, run, tracing.LLM_SPAN)
        tools = children(spans, run, tracing.TOOL_SPAN)
        assert (len(llm), len(tools)) == (2, 1)
        assert {s.attributes["hermes.session.key"] for s in [*llm, *tools] if s.attributes} == {key}
    assert len(hermes_spans(spans, tracing.LLM_SPAN)) == 8
    assert len({run.context.trace_id for run in runs if run.context}) == 4


async def test_without_opentelemetry_the_plugin_does_nothing(
    make_gateway: Any,
    register_plugin: Any,
    fake_openai: FakeOpenAI,
    spans: InMemorySpanExporter,
    errors_logged: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` fails
    tracing.otel.cache_clear()
    try:
        assert tracing.otel() is None
        register_plugin(Stamp(), "stamp")
        gateway = await make_gateway(settings_for(fake_openai.url, "tool-model"))
        reply = await send(gateway, 'call stamp {"n": 2}')
        assert reply.text == "tool results: stamped 2"
    finally:
        tracing.otel.cache_clear()
    assert spans.get_finished_spans() == ()
    assert errors_logged == []


def test_the_plugin_module_imports_no_opentelemetry() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from hermes_core.plugins import tracing\n"
        "assert tracing.otel() is None\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (run.returncode, run.stdout) == (0, "ok\n"), run.stderr
