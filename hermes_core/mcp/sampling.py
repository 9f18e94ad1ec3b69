"""A server's ``sampling/createMessage``, answered by the gateway's models.

Off unless ``mcp.servers.<name>.sampling.enabled``. The request's messages go to the first
model of the chain (the server's ``sampling.models``, else the gateway's ``agent.model`` and
fallbacks) that answers, through the gateway's providers; at most ``max_per_minute`` requests
a minute are answered. The provider interface takes no token limit, so the answer is cut at
``max_tokens`` (the smaller of the server's and the setting's), about four characters a token.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core.mcp.features import SamplingSettings
from hermes_core.providers import ProviderError, ProviderRegistry
from hermes_core.settings import ModelRef

if TYPE_CHECKING:
    from mcp_types import CreateMessageRequestParams, CreateMessageResult, ErrorData

#: Characters per token, to cut an answer at ``max_tokens`` (providers take no limit).
CHARS_PER_TOKEN = 4
WINDOW_S = 60.0


class GatewayModels:
    """The gateway's providers and model chain, lent to MCP servers for sampling."""

    def __init__(self, providers: ProviderRegistry, chain: Callable[[], list[ModelRef]]) -> None:
        self.providers = providers
        self.chain = chain

    async def complete(
        self, models: Sequence[ModelRef], messages: list[dict[str, Any]]
    ) -> tuple[ModelRef, str]:
        """The first answer of ``models`` (default: the gateway's chain), falling back on
        each failure; a ProviderError naming the last failure when none answers."""
        chain = list(models) or self.chain()
        failure: ProviderError | None = None
        for ref in chain:
            if ref.provider not in self.providers.configs:
                failure = ProviderError("non_retryable", f"no provider named {ref.provider!r}")
                continue
            try:
                completion = await self.providers.get(ref.provider).complete(
                    ref.model, messages, None
                )
            except ProviderError as error:
                logger.warning("sampling with {} failed ({})", ref, error)
                failure = error
                continue
            return ref, completion.content or ""
        raise failure or ProviderError("non_retryable", "no model configured")


class Sampler:
    """One server's sampling: its settings, its rate window and the gateway's models."""

    def __init__(self, server: str, settings: SamplingSettings, models: GatewayModels) -> None:
        self.server = server
        self.settings = settings
        self.models = models
        self._answered: deque[float] = deque()

    def _within_rate(self) -> bool:
        now = time.monotonic()
        while self._answered and now - self._answered[0] >= WINDOW_S:
            self._answered.popleft()
        if len(self._answered) >= self.settings.max_per_minute:
            return False
        self._answered.append(now)
        return True

    async def __call__(
        self, context: object, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        """The SDK's ``sampling_callback``."""
        from mcp_types import INVALID_REQUEST, CreateMessageResult, ErrorData, TextContent

        if not self._within_rate():
            limit = self.settings.max_per_minute
            return ErrorData(
                code=INVALID_REQUEST,
                message=f"sampling refused: more than {limit} requests a minute "
                f"(mcp.servers.{self.server}.sampling.max_per_minute)",
            )
        messages = _chat_messages(params)
        try:
            ref, text = await self.models.complete(self.settings.models, messages)
        except ProviderError as error:
            return ErrorData(code=INVALID_REQUEST, message=f"sampling failed: {error}")
        limit = min(params.max_tokens, self.settings.max_tokens) * CHARS_PER_TOKEN
        stop = "maxTokens" if len(text) > limit else "endTurn"
        return CreateMessageResult(
            role="assistant",
            content=TextContent(text=text[:limit]),
            model=str(ref),
            stop_reason=stop,
        )


def _chat_messages(params: CreateMessageRequestParams) -> list[dict[str, Any]]:
    """The request as chat messages: its system prompt, then its text (other content is
    described, as the providers take text)."""
    from mcp_types import TextContent

    messages: list[dict[str, Any]] = []
    if params.system_prompt:
        messages.append({"role": "system", "content": params.system_prompt})
    for message in params.messages:
        parts = [
            block.text if isinstance(block, TextContent) else f"[{block.type} content]"
            for block in message.content_as_list
        ]
        messages.append({"role": message.role, "content": "\n".join(parts)})
    return messages
