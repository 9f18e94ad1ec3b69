"""Built-in provider type ``openai``: any endpoint speaking the OpenAI chat-completions API."""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from hermes_core import hookimpl
from hermes_core.providers import Completion, ProviderError, RegisterProvider, ToolCall
from hermes_core.settings import ProviderConfig
from hermes_core.settings.schema import RegisterSetting
from hermes_core.types import ErrorKind

if TYPE_CHECKING:
    import openai

# Bodies that turn an otherwise retryable status into a permanent one, and the reverse
# (nanobot's classification; a proxy's 403 "try again in 2m" is not a dead key).
PERMANENT_MARKERS = ("insufficient_quota", "quota", "billing")
TRANSIENT_MARKERS = ("try again", "temporarily", "overloaded")


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds a server asked us to wait, from ``retry-after-ms`` or ``retry-after``."""
    if headers is None:
        return None
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def classify_status(status: int, body_text: str) -> ErrorKind:
    """Map an HTTP status (and its body) to an ``error_kind``."""
    text = body_text.lower()
    if status == 429:
        return "non_retryable" if any(m in text for m in PERMANENT_MARKERS) else "rate_limit"
    if status in (401, 403):
        return "rate_limit" if any(m in text for m in TRANSIENT_MARKERS) else "auth"
    if status == 408:
        return "timeout"
    if status == 409 or status >= 500:
        return "server"
    return "non_retryable"


def _error_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])
    return str(error.message)


class OpenAIProvider:
    """One ``openai.AsyncOpenAI`` client per configured provider, shared by all agents."""

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        # max_retries=0: the run loop owns retries, so a fallback is never delayed by hidden
        # SDK retries and every attempt is counted in the run result.
        # Imported here, not at module level: the SDK takes over a second to import, and
        # listing plugins or printing --help must not pay for it (llm#732).
        import openai

        self.client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "not-needed",
            timeout=config.timeout_s,
            max_retries=0,
        )

    async def complete(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> Completion:
        import openai
        from openai.types.chat import ChatCompletion

        body: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            body["tools"] = tools
        try:
            # The client's generic ``post`` (its documented way to send a raw body) rather than
            # ``chat.completions.create``: ``create`` re-validates every message against the
            # SDK's TypedDicts, which costs about 0.5 ms per history message on every request.
            response = await self.client.post(
                "/chat/completions", body=body, cast_to=ChatCompletion
            )
        except openai.APIStatusError as error:
            message = _error_message(error)
            raise ProviderError(
                classify_status(error.status_code, f"{message} {error.body}"),
                f"HTTP {error.status_code} from {self.name}:{model}: {message}",
                status=error.status_code,
                retry_after=retry_after_seconds(error.response.headers),
            ) from error
        except openai.APITimeoutError as error:
            raise ProviderError("timeout", f"{self.name}:{model} timed out") from error
        except openai.APIConnectionError as error:
            # The SDK says only "Connection error."; its cause says refused, reset or cut short.
            detail = error.__cause__ or error
            raise ProviderError(
                "connection", f"connection to {self.name}:{model} failed: {detail}"
            ) from error
        except (openai.APIResponseValidationError, ValueError) as error:
            raise ProviderError(
                "server", f"malformed response from {self.name}:{model}: {error}"
            ) from error
        return _completion(response, f"{self.name}:{model}")

    async def aclose(self) -> None:
        await self.client.close()


def _completion(response: Any, where: str) -> Completion:
    if isinstance(response, str):  # the SDK hands back a body that is not JSON as text
        text = " ".join(response.split())[:80]
        raise ProviderError("server", f"malformed response from {where}: not JSON: {text!r}")
    choices = getattr(response, "choices", None)
    if not choices:
        raise ProviderError("server", f"malformed response from {where}: no choices")
    # The SDK does not validate responses: a wrong shape surfaces as a missing attribute.
    try:
        message = choices[0].message
        calls = [
            ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "")
            for call in (message.tool_calls or [])
            if getattr(call, "function", None) is not None
        ]
        content = message.content
    except (AttributeError, TypeError, KeyError, IndexError) as error:
        raise ProviderError("server", f"malformed response from {where}: {error}") from None
    if content is None and not calls:
        raise ProviderError("server", f"malformed response from {where}: empty message")
    if content is not None and not isinstance(content, str):
        raise ProviderError("server", f"malformed response from {where}: content {content!r}")
    return Completion(content=content, tool_calls=calls)


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
