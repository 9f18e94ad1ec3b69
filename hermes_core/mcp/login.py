"""``hermes-core mcp login NAME``: the OAuth authorization-code login, with PKCE.

The SDK's provider runs the flow when the server first answers 401: discovery, dynamic
registration, then it hands us the authorization URL. We print it and take the redirect either
on a loopback HTTP receiver (the browser on this machine follows it) or as a URL pasted on
stdin (the browser is elsewhere, e.g. over SSH). Whichever comes first wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from hermes_core.errors import HermesError
from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.auth import FileTokenStorage, authorization_code_provider, token_path
from hermes_core.mcp.failures import leaf_error
from hermes_core.mcp.http import http_streams
from hermes_core.mcp.identity import client_info

if TYPE_CHECKING:
    from mcp.shared.auth import AuthorizationCodeResult

CALLBACK_PATH = "/callback"
#: How long a login waits for the person to approve it.
LOGIN_TIMEOUT_S = 300.0
#: The most of a request line or pasted line read: a redirect URL is far shorter.
MAX_LINE = 16384
PAGE = b"hermes-core: login received; you can close this window.\n"


class LoginFailed(HermesError):
    """The login did not complete; ``str()`` says why, in one line."""


@dataclass(frozen=True)
class LoginResult:
    """A completed login: where the tokens are and how many tools the server then listed."""

    token_file: str
    tools: int


class RedirectReceiver:
    """The loopback redirect target on 127.0.0.1, plus stdin for a pasted redirect URL."""

    def __init__(self, port: int = 0, stdin_fd: int | None = None) -> None:
        self._port = port
        self._stdin_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
        self._reading_stdin = False
        self._pasted = b""
        self._server: asyncio.Server | None = None
        self._result: asyncio.Future[AuthorizationCodeResult] | None = None

    @property
    def redirect_uri(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{CALLBACK_PATH}"

    async def __aenter__(self) -> RedirectReceiver:
        loop = asyncio.get_running_loop()
        self._result = loop.create_future()
        try:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)
        except OSError as error:
            where = f"127.0.0.1:{self._port}"
            raise LoginFailed(f"cannot listen on {where}: {error.strerror}") from None
        with contextlib.suppress(OSError, ValueError):  # a file or /dev/null cannot be watched
            loop.add_reader(self._stdin_fd, self._read_stdin)
            self._reading_stdin = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop_stdin()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait(self) -> AuthorizationCodeResult:
        """The redirect's parameters (the SDK's ``callback_handler``)."""
        assert self._result is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._result), LOGIN_TIMEOUT_S)
        except TimeoutError:
            raise LoginFailed(f"no login within {LOGIN_TIMEOUT_S:g}s") from None

    def _accept(self, url: str) -> bool:
        """Take a redirect URL (or just its path); whether it was one."""
        from mcp.shared.auth import AuthorizationCodeResult

        query = {key: values[0] for key, values in parse_qs(urlsplit(url.strip()).query).items()}
        assert self._result is not None
        if self._result.done() or not ("code" in query or "error" in query):
            return False
        if "error" in query:
            reason = query.get("error_description") or query["error"]
            self._result.set_exception(LoginFailed(f"the authorization server refused: {reason}"))
        else:
            self._result.set_result(
                AuthorizationCodeResult(
                    code=query["code"], state=query.get("state"), iss=query.get("iss")
                )
            )
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            parts = line[:MAX_LINE].decode("latin-1").split()
            found = len(parts) >= 2 and parts[0] == "GET" and parts[1].startswith(CALLBACK_PATH)
            found = found and self._accept(parts[1])
            status = b"200 OK" if found else b"404 Not Found"
            body = PAGE if found else b"not found\n"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass  # a client that went away or sent nonsense: the login goes on waiting
        finally:
            writer.close()

    def _read_stdin(self) -> None:
        try:
            chunk = os.read(self._stdin_fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:  # end of input: only the loopback receiver is left
            self._stop_stdin()
            return
        self._pasted = (self._pasted + chunk)[-MAX_LINE:]
        *lines, self._pasted = self._pasted.split(b"\n")
        for line in lines:
            self._accept(line.decode("utf-8", "replace"))

    def _stop_stdin(self) -> None:
        if self._reading_stdin:
            asyncio.get_running_loop().remove_reader(self._stdin_fd)
            self._reading_stdin = False


async def login(spec: MCPServerSpec, say: Callable[[str], None]) -> LoginResult:
    """Log in to ``spec``'s server, store the tokens, and list its tools with them."""
    from mcp import ClientSession

    assert spec.oauth is not None and spec.url is not None
    path = token_path(spec.name)
    async with RedirectReceiver(spec.oauth.redirect_port) as receiver:

        async def show(url: str) -> None:
            say(f"Open this URL in a browser to log in to MCP server {spec.name!r}:\n\n  {url}\n")
            say(
                f"Waiting for the redirect to {receiver.redirect_uri} ... If the browser runs on "
                "another machine, paste the URL it was sent to here and press Enter."
            )

        # fresh: a login registers again, as the redirect port may differ from the last one
        storage = FileTokenStorage(path, fresh=True)
        provider = authorization_code_provider(
            spec, storage, receiver.redirect_uri, show, receiver.wait
        )
        try:
            async with (
                http_streams(spec, [], auth=provider) as (read, write),
                ClientSession(read, write, client_info=client_info()) as session,
            ):
                await session.initialize()
                listing = await session.list_tools()
        except Exception as error:
            cause = leaf_error(error)
            if isinstance(cause, LoginFailed):
                raise cause from None
            raise LoginFailed(f"{type(cause).__name__}: {cause}") from None
    if not storage.has_tokens:
        raise LoginFailed("the server did not ask for a login (it accepted the request without)")
    return LoginResult(token_file=str(path), tools=len(listing.tools))
