"""Why a server's connection attempt failed, in one line a user can act on."""

from __future__ import annotations

import asyncio

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.auth import describe_auth_error
from hermes_core.mcp.stdio import StartupError

#: Longest error text kept for a server (it is shown on one line).
MAX_ERROR_CHARS = 300


class ConnectionLost(Exception):
    """The connection of a ready server ended (the process exited, the stream closed)."""


def leaf_error(error: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from anyio task groups."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (inner or list(error.exceptions))[0]
    return error


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def auth_problem(
    spec: MCPServerSpec, error: BaseException, http_errors: list[BaseException]
) -> str | None:
    """The authentication failure behind ``error`` (or the last HTTP answer), if any."""
    last = http_errors[-1] if http_errors else error
    return describe_auth_error(spec, error) or describe_auth_error(spec, last)


def describe_failure(
    error: BaseException,
    spec: MCPServerSpec,
    *,
    startup: bool,
    garbage: str | None,
    http_errors: list[BaseException],
) -> str:
    """One line for ``error``, raised by an attempt (``startup``: before it was ready).

    ``garbage`` is the first output of the attempt that was not JSON-RPC, ``http_errors``
    the transport errors its HTTP client saw.
    """
    from mcp.shared.exceptions import MCPError  # the SDK is loaded once a server has started
    from mcp_types import CONNECTION_CLOSED

    leaf = leaf_error(error)
    if (auth := auth_problem(spec, leaf, http_errors)) is not None:
        return one_line(auth)
    if isinstance(leaf, StartupError | ConnectionLost):
        return one_line(str(leaf))
    if isinstance(leaf, UnicodeDecodeError):
        return one_line(f"the server wrote bytes that are not UTF-8 on stdout: {leaf.reason}")
    if isinstance(leaf, TimeoutError):
        if startup:
            not_json_rpc = (
                f"; it wrote output that is not JSON-RPC on stdout (its logs belong on "
                f"stderr): {garbage}"
                if garbage is not None
                else ""
            )
            return one_line(
                f"no MCP handshake within {spec.startup_timeout_s:g}s (startup_timeout_s)"
                f"{not_json_rpc}"
            )
        return f"tool listing timed out after {spec.timeout_s:g}s"
    if http_errors:
        last = http_errors[-1]
        return one_line(f"cannot reach {spec.url}: {type(last).__name__}: {last}")
    if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
        when = "during startup" if startup else "unexpectedly"
        return f"the server closed the connection {when} (see its stderr)"
    return one_line(f"{type(leaf).__name__}: {leaf}")
