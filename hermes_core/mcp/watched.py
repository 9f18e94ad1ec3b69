"""A transport's read stream, passed through, that says when the connection has ended."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from mcp.shared._stream_protocols import ReadStream
    from mcp.shared.message import SessionMessage


class WatchedStream:
    """The transport's read stream, passed through, calling ``on_close`` at end of stream.

    ``ClientSession`` has no public "connection closed" signal; the end of this stream is the
    one thing every transport produces when the server goes away.
    """

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], on_close: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._on_close = on_close

    @property
    def last_context(self) -> Any:
        # The SDK reads the sender's contextvars from this attribute when a stream has it.
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_close()
            raise

    def __aiter__(self) -> WatchedStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> WatchedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()
