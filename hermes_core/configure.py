"""``Gateway.configure``: collect every plugin's registrations and check them and the settings.

The settings schema is completed first (``register_settings``), then checked; unknown keys are
logged as warnings. Nothing is started and no file is touched, so ``hermes-core config check``
stops here, and ``doctor`` runs it collecting every problem instead of raising the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from loguru import logger

from hermes_core.errors import ConfigError
from hermes_core.health.registry import policy_from
from hermes_core.mcp.settings import PoolSettings, register_mcp_settings
from hermes_core.platform_settings import plan_platforms, register_platform_settings
from hermes_core.redaction import register_settings
from hermes_core.settings import apply_schema, core_registry

if TYPE_CHECKING:
    from hermes_core.gateway import Gateway


async def configure_gateway(gateway: Gateway, *, collect_errors: bool) -> list[ConfigError]:
    """Configure ``gateway``; see :meth:`hermes_core.gateway.Gateway.configure`."""
    errors: list[ConfigError] = []

    def keep(error: ConfigError) -> None:
        if not collect_errors:
            raise error
        if str(error) not in map(str, errors):  # the schema and a server spec may agree
            errors.append(error)

    @contextlib.contextmanager
    def step() -> Iterator[None]:
        try:
            yield
        except ConfigError as error:
            keep(error)

    hooks = gateway.hooks
    schema = core_registry()
    register_mcp_settings(schema)
    register_platform_settings(schema)
    with step():
        await hooks.register("register_settings", schema.register)
    gateway.settings_schema = schema
    for error in apply_schema(gateway.config, schema):
        keep(error)
    gateway.unknown_settings = schema.unknown(gateway.config.raw)
    for unknown in gateway.unknown_settings:
        logger.warning("{}", unknown)
    with step():  # per plugin: a provider type that cannot be used names its plugin
        await hooks.register_per_plugin("register_providers", gateway.providers.registrar)
    for hook, register in (
        ("register_tools", gateway.tools.register),
        ("register_commands", gateway.commands.register),
        ("register_platforms", gateway.platforms.register),
    ):
        with step():
            await hooks.register(hook, register)
    with step():
        await hooks.register_per_plugin("register_mcp_servers", gateway.mcp.registrar)
    for name, values in gateway.config.section("mcp.servers").items():
        with step():
            gateway.mcp.apply_settings({name: values})
    # Servers from plugins carry secrets (env, headers) the settings never named.
    specs = {name: dataclasses.asdict(spec) for name, spec in gateway.mcp.specs.items()}
    register_settings({"mcp": {"servers": specs}})
    pool_settings = PoolSettings()
    with step():
        pool_settings = PoolSettings.from_mapping(gateway.config.section("mcp"))
    gateway.mcp_pool.configure(gateway.mcp.specs, pool_settings)
    with step():
        gateway.providers.configure(gateway.config.providers)
    gateway.health.configure(
        {
            name: policy_from(gateway.config.section(f"providers.{name}.breaker"))
            for name in gateway.config.providers
        }
    )
    gateway.platform_plan = plan_platforms(gateway.config, list(gateway.platforms.factories))
    for error in gateway.platform_plan.errors:
        keep(error)
    return errors
