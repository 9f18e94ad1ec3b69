"""The settings core reads before any plugin is loaded: the model chain, the run loop's bounds,
the agent cache, the store, logging and the keys every ``providers.<name>`` table has.

Every count and duration has a maximum: a value past it (``max_retries = 1000000000``) is a
typo, and would otherwise stall a run or hold memory for good.
"""

from __future__ import annotations

from hermes_core.settings.schema import DAY_S, HOUR_S, SettingsRegistry, items_of

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


def _positive_timeout(value: float) -> str | None:
    return "must be > 0: every request would time out" if value == 0 else None


def register_core_settings(register: SettingsRegistry) -> None:
    """Declare the core keys in ``register``."""
    add = register.register
    add(
        "agent.model",
        str,
        description='Primary model, "<provider>:<model>".',
        required='required: set it to "<provider>:<model>"',
    )
    add("agent.fallbacks", list, [], "Models tried in order when the primary fails.")
    add("agent.system_prompt", str, "", "System message sent first on every request.")
    add("agent.max_tool_rounds", int, 10, "Tool-call rounds in one run.", minimum=1, maximum=100)
    add(
        "agent.max_history_messages",
        int,
        200,
        "History messages sent per request.",
        minimum=1,
        maximum=100_000,
    )
    add(
        "cache.max_agents",
        int,
        256,
        "Cached agents kept; least recently used go.",
        minimum=1,
        maximum=1_000_000,
    )
    add(
        "cache.idle_ttl_s",
        float,
        3600,
        "Seconds an unused agent stays (0: forever).",
        minimum=0,
        maximum=365 * DAY_S,
    )
    add(
        "cache.max_sessions",
        int,
        1000,
        "Sessions kept loaded; the rest reload from the store.",
        minimum=1,
        maximum=1_000_000,
    )
    add(
        "plugins.disabled",
        list,
        [],
        "Plugin names blocked before import.",
        rules=(items_of((str,), "plugin names"),),
    )
    add(
        "circuit_breaker.threshold",
        int,
        3,
        "Consecutive hard failures to open.",
        minimum=1,
        maximum=1000,
    )
    add(
        "circuit_breaker.cooldown_s",
        float,
        0,
        "Seconds an open session breaker waits before letting one message through (0: never).",
        minimum=0,
        maximum=DAY_S,
    )
    add(
        "store.path",
        str,
        "",
        'SQLite transcript file (empty: sessions.db in the user data dir; ":memory:": none).',
    )
    add(
        "store.url",
        str,
        "",
        "PostgreSQL store, postgresql://user@host:port/db (overrides store.path).",
    )
    add(
        "store.password_env",
        str,
        "",
        "Env var holding the PostgreSQL password, when the URL has none.",
    )
    add(
        "store.pool_size",
        int,
        50,
        "PostgreSQL connections per process: sessions run at once.",
        minimum=2,
        maximum=1000,
    )
    add(
        "store.retention_days",
        float,
        0,
        "Days an idle session is kept (0: forever).",
        minimum=0,
        maximum=36_500,
    )
    add("logging.level", str, "INFO", "Log level (any case).", choices=LOG_LEVELS)
    add("logging.json", bool, False, "Write logs as JSON lines.")
    add(
        "metrics.port",
        int,
        0,
        "Port of a separate /metrics server (0: none).",
        minimum=0,
        maximum=65535,
    )
    add("metrics.host", str, "127.0.0.1", "Address the /metrics server binds.")
    register_provider_settings(register)


def register_provider_settings(register: SettingsRegistry) -> None:
    """Keys of every ``providers.<name>`` table, whatever its type; a provider type declares
    its own (``base_url`` for ``openai``) with ``provider_type``."""
    add = register.register
    add("providers", dict, {}, "The providers by name.")
    add("providers.<name>", dict, description="One provider (an endpoint and its key).")
    add("providers.<name>.type", str, "openai", "Provider type (a registered provider plugin).")
    add("providers.<name>.api_key_env", str, "", "Environment variable holding the key.")
    add("providers.<name>.api_key", str, "", "The key itself (keep it in .secrets.toml).")
    add(
        "providers.<name>.timeout_s",
        float,
        60,
        "Seconds before one request times out.",
        minimum=0,
        maximum=HOUR_S,
        rules=(_positive_timeout,),
    )
    add(
        "providers.<name>.max_retries",
        int,
        2,
        "Retries of a transient error before failing over.",
        minimum=0,
        maximum=100,
    )
    add(
        "providers.<name>.max_retry_wait_s",
        float,
        30,
        "Cap on one Retry-After wait, in seconds.",
        minimum=0,
        maximum=HOUR_S,
    )
    add(
        "providers.<name>.stall_timeout_s",
        float,
        60,
        "Seconds a streamed answer may go without data.",
        minimum=0,
        maximum=HOUR_S,
        rules=(_positive_timeout,),
    )
    add(
        "providers.<name>.max_connections",
        int,
        512,
        "Connections kept open to the endpoint.",
        minimum=1,
        maximum=100_000,
    )
    register_breaker_settings(register)


def register_breaker_settings(register: SettingsRegistry) -> None:
    """Keys of ``providers.<name>.breaker``: the gateway-wide health of the provider's models."""
    add = register.register
    add("providers.<name>.breaker.enabled", bool, True, "Skip the provider's unhealthy models.")
    add(
        "providers.<name>.breaker.failures",
        int,
        3,
        "Consecutive failures that open a model's breaker.",
        minimum=1,
        maximum=1000,
    )
    add(
        "providers.<name>.breaker.cooldown_s",
        float,
        30,
        "Seconds an open breaker waits before its probe.",
        minimum=0,
        maximum=DAY_S,
    )
    add(
        "providers.<name>.breaker.max_cooldown_s",
        float,
        900,
        "Cap on the cooldown, which doubles on each failed probe.",
        minimum=0,
        maximum=DAY_S,
    )
    add(
        "providers.<name>.breaker.probe",
        str,
        "passive",
        'Who probes: "passive" (the next run) or "active" (the gateway itself).',
        choices=("passive", "active"),
    )
