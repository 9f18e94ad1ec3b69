"""How hermes-core introduces itself to MCP servers (``clientInfo``), and what ``mcp test``
says of both sides' capabilities."""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_types import ClientCapabilities, Implementation, InitializeResult

CLIENT_NAME = "hermes-core"


def client_version() -> str:
    """The installed hermes-core version, from the package metadata."""
    return metadata.version("hermes-core")


def client_info() -> Implementation:
    """The ``clientInfo`` of every connection: ``hermes-core`` and its version."""
    from mcp_types import Implementation

    return Implementation(name=CLIENT_NAME, version=client_version())


def _capability_words(capabilities: Any) -> str:
    """``tools (listChanged), elicitation (form, url)``: each declared capability with its
    enabled flags."""
    words = []
    for name, value in capabilities.model_dump(by_alias=True, exclude_none=True).items():
        # A flag is on when true, or a table of its own (elicitation's ``form: {}``).
        flags = (
            [f for f, on in value.items() if on is True or isinstance(on, dict)]
            if isinstance(value, dict)
            else []
        )
        words.append(f"{name} ({', '.join(flags)})" if flags else name)
    return ", ".join(words) or "none"


def describe_capabilities(
    initialized: InitializeResult | None, declared: ClientCapabilities
) -> list[str]:
    """Two lines for ``mcp test``: the server's info and capabilities, then what the client
    ``declared`` to it."""
    lines = []
    if initialized is not None:
        info = initialized.server_info
        server = " ".join(filter(None, (info.name, info.version)))
        lines.append(
            f"server: {server} (protocol {initialized.protocol_version}); "
            f"capabilities: {_capability_words(initialized.capabilities)}"
        )
    lines.append(
        f"client: {CLIENT_NAME} {client_version()}; capabilities: {_capability_words(declared)}"
    )
    return lines
