"""The client capabilities one server's session declares, and the callbacks behind them.

The SDK's ``ClientSession`` declares ``roots``, ``sampling`` and ``elicitation`` exactly when
it is given a callback for each. So a server is given: ``roots`` when ``roots`` are
configured, ``sampling`` when ``sampling.enabled`` and the gateway lent its models, and
``elicitation`` unless ``elicitation.enabled = false``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from hermes_core.mcp import MCPServerSpec
from hermes_core.mcp.asking import Askers
from hermes_core.mcp.elicitation import CallsInFlight, Elicitor
from hermes_core.mcp.sampling import GatewayModels, Sampler

if TYPE_CHECKING:
    from mcp_types import ClientCapabilities, ListRootsResult


@dataclass
class ClientServices:
    """What the gateway lends its MCP servers: its models (for sampling) and the platforms
    that can ask their users (for elicitation). ``models`` stays None outside a gateway."""

    models: GatewayModels | None = None
    askers: Askers = field(default_factory=Askers)


class ClientCallbacks:
    """One server's callbacks, built from its spec and the services."""

    def __init__(self, spec: MCPServerSpec, services: ClientServices, calls: CallsInFlight) -> None:
        features = spec.features
        self.roots = features.roots
        self.sampler = (
            Sampler(spec.name, features.sampling, services.models)
            if features.sampling.enabled and services.models is not None
            else None
        )
        self.elicitor = (
            Elicitor(spec.name, features.elicitation, services.askers, calls)
            if features.elicitation.enabled
            else None
        )

    async def list_roots(self, context: object) -> ListRootsResult:
        from mcp_types import ListRootsResult, Root

        return ListRootsResult(
            roots=[
                Root.model_validate({"uri": uri, "name": Path(unquote(urlsplit(uri).path)).name})
                for uri in self.roots
            ]
        )

    def session_arguments(self) -> dict[str, Any]:
        """The ``ClientSession`` keyword arguments: only the callbacks to declare."""
        arguments: dict[str, Any] = {}
        if self.roots:
            arguments["list_roots_callback"] = self.list_roots
        if self.sampler is not None:
            arguments["sampling_callback"] = self.sampler
        if self.elicitor is not None:
            arguments["elicitation_callback"] = self.elicitor
        return arguments

    def declared(self) -> ClientCapabilities:
        """The capabilities those callbacks make the session declare (as the SDK builds them),
        for ``mcp test``."""
        from mcp_types import (
            ClientCapabilities,
            ElicitationCapability,
            FormElicitationCapability,
            RootsCapability,
            SamplingCapability,
            UrlElicitationCapability,
        )

        return ClientCapabilities(
            roots=RootsCapability(list_changed=True) if self.roots else None,
            sampling=SamplingCapability() if self.sampler is not None else None,
            elicitation=ElicitationCapability(
                form=FormElicitationCapability(), url=UrlElicitationCapability()
            )
            if self.elicitor is not None
            else None,
        )
