"""Built-in provider type ``openai``: any endpoint speaking the OpenAI chat-completions API.

Requests go straight through one aiohttp connection pool per provider, not through the
``openai`` SDK: under load the SDK's request building and response models cost about four
times the CPU of the request itself (docs/performance.md has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from hermes_core import hookimpl, json_codec
from hermes_core.openai_chunks import ChunkAssembler, EventDecoder, completion_from_body
from hermes_core.openai_errors import rejects_streaming, status_error
from hermes_core.providers import (
    Completion,
    ProviderError,
    RegisterProvider,
    StreamEvent,
    completion_events,
)
from hermes_core.settings import ProviderConfig
from hermes_core.settings.schema import RegisterSetting

if TYPE_CHECKING:
    import aiohttp

#: Bytes of a response read at most per wait on the socket while streaming.
STREAM_READ_BYTES = 65536


class OpenAIProvider:
    """One connection pool per configured provider, shared by all agents.

    ``headers`` replace the default ``Authorization: Bearer <api_key>`` on every request,
    for endpoints that authenticate another way (see docs/plugins.md).
    """

    def __init__(
        self, name: str, config: ProviderConfig, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.url = f"{(config.base_url or '').rstrip('/')}/chat/completions"
        auth = {"Authorization": f"Bearer {config.api_key or 'not-needed'}"}
        self.headers = {
            "Content-Type": "application/json",
            **(auth if headers is None else headers),
        }
        # False once the upstream has refused a streamed request: later streams ask for a
        # whole completion instead, without paying for the refusal again.
        self.streams = True
        self._session: aiohttp.ClientSession | None = None
        self._stream_timeout: aiohttp.ClientTimeout | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The pool, created on first use: aiohttp binds it to the running event loop."""
        if self._session is None:
            # Imported here, not at module level: listing plugins or printing --help must not
            # pay for the HTTP stack (llm#732).
            import aiohttp

            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # A stream's head must come within timeout_s (asyncio.timeout in stream()); its
            # body may take any time, as long as no wait between reads passes stall_timeout_s.
            self._stream_timeout = aiohttp.ClientTimeout(total=None)
        return self._session

    def _body(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {**params, "model": model, "messages": messages}
        if tools:
            body["tools"] = tools
        return body

    async def complete(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        **params: Any,
    ) -> Completion:
        where = f"{self.name}:{model}"
        data = json_codec.dumps(self._body(model, messages, tools, params))
        # The session's timeout (total=timeout_s) bounds the whole request.
        with _classified(where, self.config.timeout_s):
            async with self._client().post(self.url, data=data, headers=self.headers) as reply:
                body = await reply.read()
                if reply.status >= 300:
                    raise status_error(reply.status, body, reply.headers, where)
                return completion_from_body(body, reply.content_type, where)

    async def stream(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        **params: Any,
    ) -> AsyncIterator[StreamEvent]:
        where = f"{self.name}:{model}"
        if not self.streams:
            for event in completion_events(await self.complete(model, messages, tools, **params)):
                yield event
            return
        body = self._body(model, messages, tools, params)
        body["stream"] = True
        body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        data = json_codec.dumps(body)
        session = self._client()
        with _classified(where, self.config.timeout_s):
            async with asyncio.timeout(self.config.timeout_s):
                reply = await session.post(
                    self.url, data=data, headers=self.headers, timeout=self._stream_timeout
                )
        try:
            if reply.status >= 300 or "event-stream" not in reply.content_type:
                completion = await self._whole(reply, where)
                if completion is None:  # refused to stream: ask again for a whole answer
                    completion = await self.complete(model, messages, tools, **params)
                for event in completion_events(completion):
                    yield event
                return
            async for event in self._events(reply, where):
                yield event
        finally:
            # Back to the pool when the body was read to its end; closed otherwise (an error,
            # a consumer that stopped early).
            reply.release()

    async def _whole(self, reply: aiohttp.ClientResponse, where: str) -> Completion | None:
        """The completion of a streamed request that got no stream: an error, a whole
        completion (an upstream that ignores ``stream``), or None when streaming is refused."""
        with _classified(where, self.config.timeout_s):
            async with asyncio.timeout(self.config.timeout_s):
                body = await reply.read()
        if reply.status < 300:
            return completion_from_body(body, reply.content_type, where)
        error = status_error(reply.status, body, reply.headers, where)
        if not rejects_streaming(error):
            raise error
        self.streams = False
        logger.warning(
            "{} refused a streamed request ({}); not streaming from it", self.name, error
        )
        return None

    async def _events(
        self, reply: aiohttp.ClientResponse, where: str
    ) -> AsyncIterator[StreamEvent]:
        decoder, assembler = EventDecoder(), ChunkAssembler(where)
        stall = self.config.stall_timeout_s
        while not assembler.done:
            try:
                async with asyncio.timeout(stall):
                    with _classified(where, stall):
                        data = await reply.content.read(STREAM_READ_BYTES)
            except TimeoutError:
                raise ProviderError("timeout", f"{where} stalled: no data for {stall:g}s") from None
            if not data:
                break
            for payload in decoder.feed(data):
                for event in assembler.add(payload):
                    yield event
                if assembler.done:
                    break
        for event in assembler.finish():
            yield event

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@contextlib.contextmanager
def _classified(where: str, timeout_s: float) -> Iterator[None]:
    """Turn the HTTP stack's exceptions inside the block into classified ProviderErrors."""
    import aiohttp  # lazy, as in OpenAIProvider._client; loaded by then

    try:
        yield
    except TimeoutError:
        raise ProviderError("timeout", f"{where} timed out after {timeout_s:g}s") from None
    except aiohttp.ClientPayloadError as error:
        cut = f"connection to {where} failed: the response was cut short"
        raise ProviderError("connection", cut) from error
    except aiohttp.ClientResponseError as error:
        bad = f"malformed response from {where}: {error.message}"
        raise ProviderError("server", bad) from error
    except (aiohttp.ClientError, OSError) as error:
        detail = str(error) or type(error).__name__
        raise ProviderError("connection", f"connection to {where} failed: {detail}") from error


@hookimpl(trylast=True)
def register_providers(register: RegisterProvider) -> None:
    register("openai", OpenAIProvider)


def _http_url_with_host(value: str) -> str | None:
    try:
        url = urllib.parse.urlsplit(value)
    except ValueError as error:  # an unclosed [IPv6 bracket
        return f"not a URL ({error}): {value!r}"
    if url.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, got {value!r}"
    return None if url.hostname else f"expected a URL with a host, got {value!r}"


@hookimpl(trylast=True)
def register_settings(register: RegisterSetting) -> None:
    register(
        "providers.<name>.base_url",
        str,
        description="Endpoint, e.g. https://api.openai.com/v1.",
        provider_type="openai",
        required="required for an OpenAI-compatible provider",
        rules=(_http_url_with_host,),
    )
