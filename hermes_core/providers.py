"""LLM providers: the interface a provider plugin implements, and the gateway-wide registry.

A provider instance is created once per ``providers.<name>`` table and shared by every agent, so
evicting or recreating an agent never opens or leaks an HTTP client.
"""

from __future__ import annotations

import inspect
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

        ``params`` (``max_tokens``, ``temperature``…) go into the request as they are; a
        provider that cannot honour them may ignore them, but must accept them (a type that
        does not is refused: :func:`params_problem`). Make exactly one request: retries and
        fallbacks belong to the run loop.
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


def params_problem(provider: object) -> str | None:
    """Why ``provider`` (a provider class, or an instance) cannot take a request's parameters,
    or None. Every run passes them (``temperature``, ``max_tokens``…) to ``complete`` and
    ``stream`` as keyword arguments, so each must accept ``**params``."""
    cls = provider if isinstance(provider, type) else type(provider)
    for method in ("complete", "stream"):
        function = getattr(provider, method, None)
        if not callable(function):
            continue  # a missing complete fails on its own; stream is optional
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):  # no signature to read (a builtin): cannot tell
            continue
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
            return (
                f"{cls.__qualname__}.{method}() does not accept **params, the request's "
                "parameters (temperature, max_tokens...)"
            )
    return None


@dataclass(frozen=True)
class ProviderType:
    """A provider type a plugin registered, and why it cannot serve runs when it cannot."""

    name: str
    factory: ProviderFactory
    plugin: str

    @property
    def problem(self) -> str | None:
        """The line saying why this type cannot serve runs, when its factory is a class that
        tells before any provider is created (any other factory's provider is checked when
        :meth:`ProviderRegistry.get` creates it)."""
        problem = params_problem(self.factory) if isinstance(self.factory, type) else None
        return None if problem is None else self.unusable(problem)

    def unusable(self, problem: str) -> str:
        """The one line that says this type cannot be used because of ``problem``."""
        return (
            f"provider type {self.name!r} from plugin {self.plugin!r} cannot be used: "
            f"{problem}; fix the plugin, or choose another type"
        )


class ProviderTypeError(ConfigError):
    """A ``providers.<name>.type`` that names no registered type, or an unusable one."""


class ProviderRegistry:
    """Provider types contributed by plugins, and one live provider per configured name."""

    def __init__(self) -> None:
        self.types: dict[str, ProviderType] = {}
        self._providers: dict[str, Provider] = {}
        #: Providers created by a factory whose instance cannot serve runs: why not.
        self._unusable: dict[str, str] = {}
        self.configs: dict[str, ProviderConfig] = {}

    def registrar(self, plugin: str) -> RegisterProvider:
        """The ``register`` callback handed to ``register_providers`` of ``plugin``.

        The first registration of a type wins: built-ins register last, so a plugin that
        registers ``openai`` replaces the built-in one.
        """

        def register(type_name: str, factory: ProviderFactory) -> None:
            if type_name in self.types:
                logger.debug("provider type {} already registered; keeping the first", type_name)
                return
            self.types[type_name] = ProviderType(type_name, factory, plugin)

        return register

    def configure(self, configs: Mapping[str, ProviderConfig]) -> None:
        """Check every configured provider names a registered, usable type (before any is
        created)."""
        for name, config in configs.items():
            kind = self.types.get(config.type)
            key = f"providers.{name}.type"
            if kind is None:
                known = ", ".join(sorted(self.types)) or "none"
                raise ProviderTypeError(key, f"unknown provider type {config.type!r} ({known})")
            if (problem := kind.problem) is not None:
                raise ProviderTypeError(key, problem)
        self.configs = dict(configs)
        register_secrets(config.api_key for config in configs.values())

    def get(self, name: str) -> Provider:
        """The shared provider for ``providers.<name>``, created on first use; a
        ProviderError (``non_retryable``) when it cannot take the run's parameters."""
        provider = self._providers.get(name)
        if provider is None:
            config = self.configs[name]
            kind = self.types[config.type]
            provider = self._providers[name] = kind.factory(name, config)
            if (problem := params_problem(provider)) is not None:
                self._unusable[name] = f"providers.{name}: {kind.unusable(problem)}"
                logger.error("{}", self._unusable[name])
        if name in self._unusable:
            raise ProviderError("non_retryable", self._unusable[name])
        return provider

    async def aclose(self) -> None:
        providers, self._providers = self._providers, {}
        self._unusable.clear()
        for provider in providers.values():
            await provider.aclose()
