"""What one server may use of the client, from ``mcp.servers.<name>``: roots, resources,
prompts, sampling and elicitation (keys declared in :mod:`hermes_core.mcp.settings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermes_core.mcp.settings import SERVER, check_table, default
from hermes_core.settings import ModelRef


def _default(key: str) -> Any:
    return default(f"servers.<name>.{key}")


def root_uris(paths: list[str]) -> tuple[str, ...]:
    """``roots`` as ``file://`` URIs: paths made absolute (``~`` expanded), URIs kept."""
    return tuple(
        item if item.startswith("file://") else Path(item).expanduser().resolve().as_uri()
        for item in paths
    )


@dataclass(frozen=True)
class SamplingSettings:
    """``mcp.servers.<name>.sampling``: whether and how its ``sampling/createMessage`` requests
    are answered by the gateway's models.

    :param models: the chain to use, first first; empty: the gateway's own chain.
    """

    enabled: bool = _default("sampling.enabled")
    max_tokens: int = _default("sampling.max_tokens")
    max_per_minute: int = _default("sampling.max_per_minute")
    models: tuple[ModelRef, ...] = ()

    @classmethod
    def from_mapping(cls, where: str, table: Mapping[str, Any]) -> SamplingSettings:
        where = f"{where}.sampling"
        check_table(f"{SERVER}.sampling", table, where)
        models = tuple(ModelRef.parse(m, f"{where}.models") for m in table.get("models", ()))
        values = {k: v for k, v in table.items() if k != "models"}
        return cls(**values, models=models)


@dataclass(frozen=True)
class ElicitationSettings:
    """``mcp.servers.<name>.elicitation``: whether its requests for user input reach the user."""

    enabled: bool = _default("elicitation.enabled")
    timeout_s: float = _default("elicitation.timeout_s")

    @classmethod
    def from_mapping(cls, where: str, table: Mapping[str, Any]) -> ElicitationSettings:
        check_table(f"{SERVER}.elicitation", table, f"{where}.elicitation")
        return cls(**{key: value for key, value in table.items()})


@dataclass(frozen=True)
class Features:
    """Everything a server may use of the client besides tool calls."""

    roots: tuple[str, ...] = ()
    resources: bool = _default("resources")
    resource_max_chars: int = _default("resource_max_chars")
    prompts: bool = _default("prompts")
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    elicitation: ElicitationSettings = field(default_factory=ElicitationSettings)

    @classmethod
    def from_mapping(cls, where: str, values: Mapping[str, Any]) -> Features:
        """Read from a server's (already type-checked) table."""
        return cls(
            roots=root_uris(values.get("roots", [])),
            resources=values.get("resources", _default("resources")),
            resource_max_chars=values.get("resource_max_chars", _default("resource_max_chars")),
            prompts=values.get("prompts", _default("prompts")),
            sampling=SamplingSettings.from_mapping(where, values.get("sampling", {})),
            elicitation=ElicitationSettings.from_mapping(where, values.get("elicitation", {})),
        )
