"""The agent: one session's model chain and history, and the run loop that drives the LLM.

An agent owns no connections: providers and tools are gateway-wide, so creating or evicting an
agent is cheap and never spawns or leaks anything.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from loguru import logger

from hermes_core.client_tools import ClientToolSet
from hermes_core.events import (
    Fallback,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    UsageReported,
    emit,
    streaming,
)
from hermes_core.health import ModelHealth
from hermes_core.hookexec import HookCallError
from hermes_core.hooks import Hooks
from hermes_core.providers import (
    Completion,
    Provider,
    ProviderError,
    ProviderRegistry,
    StreamFinished,
    ToolCall,
    stream_completion,
)
from hermes_core.providers import TextDelta as ProviderDelta
from hermes_core.run_request import RunRequest
from hermes_core.settings import ModelRef
from hermes_core.tools import Tool, ToolRegistry, ToolSet
from hermes_core.types import (
    RETRYABLE_KINDS,
    ErrorKind,
    RunResult,
    Session,
    Usage,
    make_result,
    new_id,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Backoff for a retryable error that came without Retry-After: 0.5 s doubling, capped.
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


@dataclass
class AgentServices:
    """The gateway-wide parts an agent uses; shared by every agent."""

    hooks: Hooks
    providers: ProviderRegistry
    tools: ToolRegistry
    health: ModelHealth


def failure_text(kind: ErrorKind, error: str) -> str:
    """What the user reads when a run fails. It never enters the model's history."""
    return f"Sorry, the request failed ({kind}): {error}"


@dataclass
class _RunState:
    session: Session
    #: The conversation sent with each request: history, the user's message, the run's own.
    messages: list[dict[str, Any]]
    chain: Sequence[ModelRef]
    index: int = 0
    #: The chain index the run was admitted to: later rounds on it need no admission.
    entered: int = -1
    api_calls: int = 0
    tool_calls: int = 0
    #: Text already passed on to the run's listener: once there is any, no retry or fallback.
    streamed: list[str] = field(default_factory=list)
    #: Tokens of the run's requests, summed; None until an upstream reports some.
    usage: dict[str, int] | None = None
    #: Request fields sent with every upstream request (RunRequest.params).
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> ModelRef:
        return self.chain[self.index]

    def add_usage(self, usage: dict[str, int]) -> None:
        total = self.usage or dict.fromkeys(usage, 0)
        self.usage = {key: total[key] + value for key, value in usage.items()}


class Agent:
    """A cached, per-session runner: the model chain, the history, and the run loop."""

    def __init__(
        self,
        session_key: str,
        models: Sequence[ModelRef],
        history: list[dict[str, Any]],
        services: AgentServices,
        *,
        system_prompt: str = "",
        max_tool_rounds: int = 10,
        max_history_messages: int = 200,
    ) -> None:
        self.id = new_id()[:12]
        self.session_key = session_key
        self.models = tuple(models)
        self.history = history
        self.services = services
        self.system_prompt = system_prompt
        self.max_tool_rounds = max_tool_rounds
        self.max_history_messages = max_history_messages
        self.created_at = time.time()
        self.runs = 0

    def __repr__(self) -> str:
        return f"<Agent {self.id} session={self.session_key!r} model={self.models[0]}>"

    @property
    def primary_model(self) -> ModelRef:
        return self.models[0]

    def _system(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    async def run(
        self, session: Session, text: str, request: RunRequest | None = None
    ) -> tuple[RunResult, list[dict[str, Any]]]:
        """Run one user message to a final answer or a classified failure.

        Returns the result and, when the run succeeded, the assistant and tool messages it
        produced after the user's message; a failed run produces none, so a failure can never
        poison the next request. :attr:`history` is left alone: the gateway adds the turn once
        the store has it. ``request`` (parameters, client tools, a stateless conversation or
        a suspended run to resume) gets the run's :class:`~hermes_core.run_request.RunOutcome`.
        """
        self.runs += 1
        started = time.perf_counter()
        request = request or RunRequest()
        history = [*self._system(), *self.history[-self.max_history_messages :]]
        messages, added = request.opening(
            self._system(), [*history, {"role": "user", "content": text}]
        )
        state = _RunState(session, messages, self.models, params=request.params)
        outcome, client_names = request.outcome, request.client_tool_names
        tool_rounds = 0

        def result(**fields: Any) -> RunResult:
            return make_result(
                model=str(state.model),
                primary_model=str(self.primary_model),
                fallback_used=state.index > 0,
                api_calls=state.api_calls,
                tool_calls=state.tool_calls,
                duration_s=time.perf_counter() - started,
                usage=state.usage,
                **fields,
            )

        while True:
            # Asked afresh each round: an MCP server may have come back or gone away.
            offered = await self.services.tools.offered()
            toolset = ClientToolSet(offered.tools, tuple(request.client_tools))
            try:
                completion = await self._complete_with_fallbacks(state, toolset)
            except ProviderError as error:
                # Text the user already saw is shown as such, the failure after it.
                shown = "".join(state.streamed)
                explained = failure_text(error.kind, str(error))
                return result(
                    failed=True,
                    error=str(error),
                    error_kind=error.kind,
                    final_response=f"{shown}\n\n{explained}" if shown else explained,
                ), []
            assistant = completion.as_message()
            messages.append(assistant)
            added.append(assistant)
            outcome.finish_reason = completion.finish_reason
            if not completion.tool_calls:
                return result(final_response=completion.content or ""), added
            if client_calls := [c for c in completion.tool_calls if c.name in client_names]:
                # The client runs its own calls; the gateway's of this turn run now.
                own = [c for c in completion.tool_calls if c.name not in client_names]
                results = await self._run_tools(state, own, toolset) if own else []
                messages.extend(results)
                added.extend(results)
                outcome.client_calls, outcome.context = client_calls, messages
                return result(final_response=completion.content or ""), added
            if tool_rounds >= self.max_tool_rounds:
                error_text = (
                    f"stopped after {self.max_tool_rounds} tool rounds (agent.max_tool_rounds)"
                )
                return result(
                    failed=True,
                    error=error_text,
                    error_kind="tool",
                    final_response=failure_text("tool", error_text),
                ), []
            tool_rounds += 1
            tool_messages = await self._run_tools(state, completion.tool_calls, toolset)
            messages.extend(tool_messages)
            added.extend(tool_messages)

    async def _complete_with_fallbacks(self, state: _RunState, toolset: ToolSet) -> Completion:
        # Walk the chain forward only: once failed over, a run never returns to an earlier
        # model or restarts its retry budget. A model the gateway knows is down is skipped
        # without a request; when every one is, the run fails fast as ``unavailable``.
        health = self.services.health
        failure: ProviderError | None = None
        while True:
            last = state.index + 1 >= len(state.chain)
            skip = None if state.entered == state.index else await health.admit(state.model)
            if skip is None:
                state.entered = state.index
                try:
                    return await self._complete_with_retries(state, toolset)
                except ProviderError as error:
                    if last or state.streamed:
                        raise
                    failure, reason = error, str(error)
                except BaseException:
                    await health.abandon(state.model)  # cancelled: a probe it sent goes back
                    raise
            elif last:
                raise failure or health.unavailable(state.chain)
            else:
                reason = str(skip)
            from_model, to_model = state.model, state.chain[state.index + 1]
            # A skip was logged once, when the breaker opened: not again for every message.
            log = logger.debug if skip else logger.warning
            log("{}: {}; falling back to {}", from_model, reason, to_model)
            state.index += 1
            emit(Fallback(str(from_model), str(to_model), reason))
            await self.services.hooks.on_fallback(
                state.session, self, reason, str(from_model), str(to_model)
            )

    async def _complete_with_retries(self, state: _RunState, toolset: ToolSet) -> Completion:
        ref, session, messages = state.model, state.session, state.messages
        config = self.services.providers.configs[ref.provider]
        provider = self.services.providers.get(ref.provider)
        tools = toolset.schemas() or None
        hooks, health = self.services.hooks, self.services.health
        attempt = 0
        while True:
            state.api_calls += 1
            started = time.perf_counter()
            try:
                if streaming():
                    completion = await self._stream(provider, ref, messages, tools, state)
                else:
                    completion = await provider.complete(ref.model, messages, tools, **state.params)
            except ProviderError as error:
                elapsed = time.perf_counter() - started
                logger.debug("{} failed: {}", ref, error)
                await hooks.on_llm_request(session, self, str(ref), elapsed, error.kind)
                await health.report(ref, error)
                retryable = error.kind in RETRYABLE_KINDS and not state.streamed
                if not retryable or attempt >= config.max_retries:
                    raise
                attempt += 1
                backoff = min(BASE_BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S)
                wait = error.retry_after if error.retry_after is not None else backoff
                wait = min(wait, config.max_retry_wait_s)
                if await health.admit(ref, within_s=wait) is not None:
                    raise  # it is now open past the wait: no time spent on it, fall over
                logger.info("{} {}; retry {} in {:.2f}s", ref, error.kind, attempt, wait)
                await asyncio.sleep(wait)
            else:
                elapsed = time.perf_counter() - started
                usage = None
                if completion.usage is not None:
                    counted = completion.usage.as_dict()
                    state.add_usage(counted)
                    usage = cast(Usage, counted)
                    emit(UsageReported(str(ref), usage))
                await hooks.on_llm_request(session, self, str(ref), elapsed, None, usage)
                await health.report(ref, None)
                return completion

    @staticmethod
    async def _stream(
        provider: Provider,
        ref: ModelRef,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        state: _RunState,
    ) -> Completion:
        """One request, its text passed on to the run's listener as it arrives."""
        async for event in stream_completion(provider, ref.model, messages, tools, **state.params):
            if isinstance(event, StreamFinished):
                return event.completion
            if isinstance(event, ProviderDelta):
                state.streamed.append(event.text)
                emit(TextDelta(event.text))
        raise ProviderError("server", f"the stream from {ref} ended without its completion")

    async def _run_tools(
        self, state: _RunState, calls: list[ToolCall], toolset: ToolSet
    ) -> list[dict[str, Any]]:
        # The model asked for these together: run them concurrently, answer in its order.
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._call_tool(state.session, call, toolset)) for call in calls
            ]
        state.tool_calls += len(calls)
        return [
            {"role": "tool", "tool_call_id": call.id, "content": task.result()}
            for call, task in zip(calls, tasks, strict=True)
        ]

    async def _call_tool(self, session: Session, call: ToolCall, toolset: ToolSet) -> str:
        started = time.perf_counter()
        emit(ToolCallStarted(call.id, call.name, call.arguments))
        arguments: dict[str, Any] = {}
        try:
            decoded = json.loads(call.arguments or "{}")
            if not isinstance(decoded, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as error:
            output = f"error: invalid arguments for tool {call.name!r}: {error}"
        else:
            arguments = decoded
            output = await self._invoke(session, toolset.get(call.name), call.name, arguments)
        elapsed = time.perf_counter() - started
        emit(ToolCallFinished(call.id, call.name, output, elapsed))
        await self.services.hooks.post_tool_call(session, call.name, arguments, output, elapsed)
        return output

    async def _invoke(
        self, session: Session, tool: Tool | None, name: str, arguments: dict[str, Any]
    ) -> str:
        if tool is None:
            return f"error: unknown tool {name!r}"
        try:
            replacement = await self.services.hooks.pre_tool_call(session, name, arguments)
        except HookCallError as error:
            logger.error("{}", error)
            return f"error: tool {name!r} was blocked by a plugin error"
        if replacement is not None:
            return (
                replacement
                if isinstance(replacement, str)
                else json.dumps(replacement, default=str)
            )
        try:
            return await asyncio.wait_for(tool.call(arguments), tool.timeout_s)
        except TimeoutError:
            return f"error: tool {name!r} timed out after {tool.timeout_s}s"
        except Exception as error:  # a tool's failure is the model's to handle, not the run's
            logger.warning("tool {} raised {}: {}", name, type(error).__name__, error)
            return f"error: tool {name!r} failed: {type(error).__name__}: {error}"
