"""Prometheus metrics of one gateway: the instruments, the live-state collector and the
exposition.

Each gateway has its own ``CollectorRegistry``, never prometheus_client's global one: a process
may run several gateways (a test suite does), and each reports only its own. Counters and
histograms are fed from hooks by the built-in ``metrics`` plugin; what the gateway already knows
(cached agents, runs in flight, MCP servers) is read at scrape time, so it cannot drift.

Importing this module imports ``prometheus_client`` (about 0.1 s), which is why the plugin
imports it only when the gateway starts.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from hermes_core.health import State
from hermes_core.mcp.connection import ServerState

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway
    from hermes_core.types import ErrorKind, RunResult, Usage

#: Histogram buckets in seconds, from a short answer to a long tool-using run.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: The ``error_kind`` label of a run or request that did not fail.
NO_ERROR = "none"
#: The ``on_evict`` reason of a circuit breaker opening (the built-in one uses it).
BREAKER_REASON = "circuit_open"
#: The MCP server states whose stdio server has a running process.
PROCESS_STATES = frozenset({ServerState.STARTING.value, ServerState.READY.value})
#: Every state ``hermes_mcp_servers`` reports, zeros included, so each series always exists.
SERVER_STATES = (*(state.value for state in ServerState), "disabled")
#: Every state ``hermes_model_health`` reports.
HEALTH_STATES = tuple(state.value for state in State)


def _outcome(failed: bool) -> str:
    return "failed" if failed else "ok"


class _Series:
    """A labelled metric's children, one per tuple of label values, looked up in a dict:
    prometheus_client's ``labels()`` checks its arguments and takes a lock on every call
    (about 3 µs, five times a run)."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class GatewayMetrics:
    """The instruments of one gateway, in their own :attr:`registry`."""

    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry()
        counter, histogram = self._counter, self._histogram
        self.runs = counter(
            "hermes_runs",
            "Agent runs, by outcome (ok, failed) and error_kind (none when ok).",
            "outcome",
            "error_kind",
        )
        self.run_duration = histogram(
            "hermes_run_duration_seconds",
            "Wall time of agent runs (RunResult duration_s), by outcome.",
            "outcome",
        )
        self.tool_calls = counter("hermes_tool_calls", "Tool calls made by agent runs.")
        self.fallbacks = counter(
            "hermes_fallbacks",
            "Switches of a run from one model to the next of agent.fallbacks.",
            "from_model",
            "to_model",
        )
        self.evictions = counter(
            "hermes_evictions", "Agents that left the cache, by reason.", "reason"
        )
        self.breaker_openings = counter(
            "hermes_circuit_breaker_openings",
            "Circuit breaker openings (evictions with reason circuit_open).",
        )
        self.llm_request_duration = histogram(
            "hermes_llm_request_duration_seconds",
            "Wall time of each LLM request (retries included), by model and outcome.",
            "model",
            "outcome",
        )
        self.llm_request_errors = counter(
            "hermes_llm_request_errors",
            "Failed LLM requests, by model and error_kind.",
            "model",
            "error_kind",
        )
        self.tokens = counter(
            "hermes_llm_tokens",
            "Tokens the upstreams counted, by provider, model and kind (prompt, completion).",
            "provider",
            "model",
            "kind",
        )
        self._runs, self._run_duration = _Series(self.runs), _Series(self.run_duration)
        self._llm_duration = _Series(self.llm_request_duration)
        self._llm_errors, self._tokens = _Series(self.llm_request_errors), _Series(self.tokens)
        # The usual first series exists from the start, so rates work before any failure.
        self._runs("ok", NO_ERROR)
        self.registry.register(LiveState(gateway))

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str, *labels: str) -> Histogram:
        """Timings in seconds, in :data:`LATENCY_BUCKETS`."""
        return Histogram(
            name, documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry
        )

    def record_run(self, result: RunResult) -> None:
        """Count one finished run (``post_run``)."""
        outcome = _outcome(result["failed"])
        self._runs(outcome, result["error_kind"] or NO_ERROR).inc()
        self._run_duration(outcome).observe(result["duration_s"])
        if result["tool_calls"]:
            self.tool_calls.inc(result["tool_calls"])

    def record_fallback(self, from_model: str, to_model: str) -> None:
        """Count one switch to a fallback model (``on_fallback``)."""
        self.fallbacks.labels(from_model, to_model).inc()

    def record_eviction(self, reason: str) -> None:
        """Count one eviction (``on_evict``); a ``circuit_open`` one is a breaker opening."""
        self.evictions.labels(reason).inc()
        if reason == BREAKER_REASON:
            self.breaker_openings.inc()

    def record_llm_request(
        self,
        model: str,
        duration_s: float,
        error_kind: ErrorKind | None,
        usage: Usage | None = None,
    ) -> None:
        """Time one LLM request and count its tokens (``on_llm_request``)."""
        self._llm_duration(model, _outcome(error_kind is not None)).observe(duration_s)
        if error_kind is not None:
            self._llm_errors(model, error_kind).inc()
        if usage is not None:
            provider = model.partition(":")[0]
            self._tokens(provider, model, "prompt").inc(usage["prompt_tokens"])
            self._tokens(provider, model, "completion").inc(usage["completion_tokens"])

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics as ``(body, content type)``, in the format the ``Accept`` header asks
        for: Prometheus text by default, OpenMetrics when asked."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class LiveState(Collector):
    """Gauges and counters read from the gateway at each scrape.

    It holds the gateway weakly: a registry outliving its gateway reports nothing more.
    """

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = weakref.ref(gateway)

    def collect(self) -> Iterator[Metric]:
        gateway = self._gateway()
        if gateway is None:
            return
        yield GaugeMetricFamily(
            "hermes_cached_agents", "Agents in the agent cache.", value=len(gateway.cache)
        )
        yield GaugeMetricFamily(
            "hermes_runs_in_flight",
            "Messages being handled now.",
            value=gateway.status()["runs_in_flight"],
        )
        rows = gateway.mcp_pool.status()
        servers = GaugeMetricFamily(
            "hermes_mcp_servers", "Configured MCP servers, by state.", labels=["state"]
        )
        for state in SERVER_STATES:
            servers.add_metric([state], sum(1 for row in rows if row["state"] == state))
        yield servers
        yield GaugeMetricFamily(
            "hermes_mcp_processes",
            "MCP server processes running (stdio servers starting or ready).",
            value=sum(
                1 for row in rows if row["transport"] == "stdio" and row["state"] in PROCESS_STATES
            ),
        )
        starts = CounterMetricFamily(
            "hermes_mcp_server_starts",
            "Connection attempts of each MCP server (each spawns a stdio server's process).",
            labels=["server"],
        )
        restarts = CounterMetricFamily(
            "hermes_mcp_server_restarts",
            "Connection attempts of each MCP server after its first.",
            labels=["server"],
        )
        for row in rows:
            starts.add_metric([row["name"]], row["starts"])
            restarts.add_metric([row["name"]], row["restarts"])
        yield starts
        yield restarts
        yield _model_health(gateway)


def _model_health(gateway: Gateway) -> GaugeMetricFamily:
    """1 for each model's current state, 0 for the others: ``{state="open"} == 1`` alerts."""
    health = GaugeMetricFamily(
        "hermes_model_health",
        "Gateway-wide health of each model (its breaker or its provider's), by state.",
        labels=["model", "state"],
    )
    configured = [gateway.config.model, *gateway.config.fallbacks]
    for ref in gateway.health.models(configured):
        current = gateway.health.describe(ref)["state"]
        for state in HEALTH_STATES:
            health.add_metric([str(ref), state], 1 if state == current else 0)
    return health
