"""LLM providers: the interface a provider plugin implements, and the gateway-wide registry.

A provider instance is created once per ``providers.<name>`` table and shared by every agent, so
evicting or recreating an agent never opens or leaks an HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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


@dataclass(frozen=True)
class Completion:
    """One chat completion, reduced to what the run loop needs."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)

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


class Provider(Protocol):
    """What a provider plugin's factory returns."""

    async def complete(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> Completion:
        """Ask ``model`` for the next assistant message; raise ProviderError on failure.

        Make exactly one request: retries and fallbacks belong to the run loop.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once at gateway shutdown."""
        ...


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
