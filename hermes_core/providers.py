"""LLM providers: the interface a provider plugin implements, and the gateway-wide registry.

A provider instance is created once per ``providers.<name>`` table and shared by every agent, so
evicting or recreating an agent never opens or leaks an HTTP client.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from loguru import logger

from hermes_core.errors import ConfigError
from hermes_core.redaction import register_secrets, scrub
from hermes_core.settings import ProviderConfig
from hermes_core.types import ErrorKind


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Usage:
    """Tokens one request cost, as the upstream reported them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def parse(cls, value: Any) -> Usage | None:
        """The ``usage`` object of a response, or None when it is absent or not numbers."""
        if not isinstance(value, Mapping):
            return None
        prompt, completion, total = (
            value.get(key) for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        )
        if not (_is_count(prompt) and _is_count(completion)):
            return None
        if not _is_count(total):
            total = prompt + completion
        return cls(prompt, completion, total)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """One chat completion, reduced to what the run loop needs."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: Why the model stopped (``stop``, ``tool_calls``, ``length``…), when the upstream said.
    finish_reason: str | None = None
    usage: Usage | None = None

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation sent back to the model."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        return message


class ProviderError(Exception):
    """A failed completion, classified into the contract's ``error_kind`` taxonomy.

    The message is scrubbed of every registered secret here, where it is made: it travels on
    into replies, results, hooks and logs (an upstream 401 body may echo the API key).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind: ErrorKind = kind
        self.status = status
        self.retry_after = retry_after
        super().__init__(scrub(message))


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text, in order; the pieces concatenated are the content."""

    text: str


@dataclass(frozen=True)
class ToolCallReady:
    """One tool call, assembled whole from the stream's fragments."""

    call: ToolCall


@dataclass(frozen=True)
class StreamFinished:
    """The last event of every stream: the whole completion, its finish reason and usage."""

    completion: Completion


StreamEvent = TextDelta | ToolCallReady | StreamFinished


class Provider(Protocol):
    """What a provider plugin's factory returns."""

    async def complete(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        **params: Any,
    ) -> Completion:
        """Ask ``model`` for the next assistant message; raise ProviderError on failure.

        ``params`` (``max_tokens``, ``temperature``…) go into the request as they are. Make
        exactly one request: retries and fallbacks belong to the run loop.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once at gateway shutdown."""
        ...


class StreamingProvider(Provider, Protocol):
    """A provider that can also stream; :func:`stream_completion` uses it when offered."""

    def stream(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        **params: Any,
    ) -> AsyncIterator[StreamEvent]:
        """Like :meth:`Provider.complete`, as events: text deltas as they arrive, each tool
        call once whole, and :class:`StreamFinished` last.

        A failure before the first event raises ProviderError classified as ``complete``
        would; a stream that stalls longer than the provider allows raises kind ``timeout``.
        """
        ...


def completion_events(completion: Completion) -> list[StreamEvent]:
    """The events a stream of ``completion`` would have produced, all at once."""
    events: list[StreamEvent] = [TextDelta(completion.content)] if completion.content else []
    events.extend(ToolCallReady(call) for call in completion.tool_calls)
    events.append(StreamFinished(completion))
    return events


async def stream_completion(
    provider: Provider,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    **params: Any,
) -> AsyncIterator[StreamEvent]:
    """Stream from ``provider``; one that only implements ``complete`` yields its whole
    answer as one delta once it has it. ``params`` go into the request body as they are."""
    stream = getattr(provider, "stream", None)
    if stream is None:
        completion = await provider.complete(model, messages, tools, **params)
        for event in completion_events(completion):
            yield event
        return
    events: AsyncIterator[StreamEvent] = stream(model, messages, tools, **params)
    try:
        async for event in events:
            yield event
    finally:
        # A consumer that stops early must not leave the upstream response open until GC.
        if isinstance(events, AsyncGenerator):
            await events.aclose()


ProviderFactory = Callable[[str, ProviderConfig], Provider]
RegisterProvider = Callable[[str, ProviderFactory], None]


class ProviderRegistry:
    """Provider types contributed by plugins, and one live provider per configured name."""

    def __init__(self) -> None:
        self.factories: dict[str, ProviderFactory] = {}
        self._providers: dict[str, Provider] = {}
        self.configs: dict[str, ProviderConfig] = {}

    def register(self, type_name: str, factory: ProviderFactory) -> None:
        """The ``register`` callback handed to ``register_providers``.

        The first registration of a type wins: built-ins register last, so a plugin that
        registers ``openai`` replaces the built-in one.
        """
        if type_name in self.factories:
            logger.debug("provider type {} already registered; keeping the first", type_name)
            return
        self.factories[type_name] = factory

    def configure(self, configs: Mapping[str, ProviderConfig]) -> None:
        """Check every configured provider names a registered type (before any is created)."""
        for name, config in configs.items():
            if config.type not in self.factories:
                known = ", ".join(sorted(self.factories)) or "none"
                raise ConfigError(
                    f"providers.{name}.type", f"unknown provider type {config.type!r} ({known})"
                )
        self.configs = dict(configs)
        register_secrets(config.api_key for config in configs.values())

    def get(self, name: str) -> Provider:
        """The shared provider for ``providers.<name>``, created on first use."""
        provider = self._providers.get(name)
        if provider is None:
            config = self.configs[name]
            provider = self._providers[name] = self.factories[config.type](name, config)
        return provider

    async def aclose(self) -> None:
        providers, self._providers = self._providers, {}
        for provider in providers.values():
            await provider.aclose()
