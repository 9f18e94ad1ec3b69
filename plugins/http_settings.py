"""``platforms.http``, validated: the address, the API keys and the limits.

Keys: ``enabled``, ``host`` (default 127.0.0.1; an IPv6 address with or without brackets),
``port`` (default 8000; 0 picks a free one), ``api_keys`` (a list of plain keys or
``{name = "alice", key_env = "ALICE_KEY"}`` tables), ``api_keys_env`` (an environment variable
holding comma-separated plain keys), ``allow_users``, ``max_body_bytes`` (default 1 MiB),
``header_timeout_s`` (default 10), ``stop_grace_s``, ``cors_origins`` (default none),
``parameters`` (:class:`~hermes_core.plugins.http_params.ParameterPolicy`),
``record_stateless`` (default true), ``max_suspended_runs`` and ``suspended_run_ttl_s``.
Without any API key the platform listens only on a loopback host. No error message ever
shows a key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hermes_core.errors import ConfigError
from hermes_core.http_protocol import DEFAULT_HEADER_TIMEOUT_S
from hermes_core.platforms import PlatformSettings
from hermes_core.plugins.http_params import ParameterPolicy
from hermes_core.settings.schema import RegisterSetting

NAME = "http"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: Longest accepted ``header_timeout_s``: an hour is already generous for a slow link.
MAX_HEADER_TIMEOUT_S = 3600.0
#: A key's name is part of its session keys (``http@alice:...``): no ``:`` or ``@``.
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: The keys of a named-key table.
KEY_TABLE = ("name", "key_env")
EXPECTED_KEYS = "expected a list of strings (plain keys) or {name, key_env} tables"
#: An origin as a browser sends it: scheme, host and an optional port, nothing more.
ORIGIN = re.compile(r"^https?://[^/\s:]+(:\d{1,5})?$")
DEFAULT_MAX_SUSPENDED_RUNS = 1000
DEFAULT_SUSPENDED_RUN_TTL_S = 600.0


@dataclass(frozen=True)
class ApiKey:
    """One accepted API key and the non-secret name its sessions are filed under."""

    name: str
    secret: str = field(repr=False)

    @classmethod
    def plain(cls, secret: str) -> ApiKey:
        """A key given as a plain string: named ``key-`` and a short hash of it, stable when
        the list is reordered, and never the key itself."""
        return cls("key-" + hashlib.sha256(secret.encode()).hexdigest()[:8], secret)


@dataclass(frozen=True)
class HttpSettings:
    """``platforms.http``, validated."""

    host: str
    port: int
    api_keys: tuple[ApiKey, ...]
    max_body_bytes: int
    header_timeout_s: float
    cors_origins: tuple[str, ...] = ()
    parameters: ParameterPolicy = field(default_factory=ParameterPolicy)
    record_stateless: bool = True
    max_suspended_runs: int = DEFAULT_MAX_SUSPENDED_RUNS
    suspended_run_ttl_s: float = DEFAULT_SUSPENDED_RUN_TTL_S

    @property
    def address(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def load(cls, settings: PlatformSettings) -> HttpSettings:
        """Read and check the settings; a ConfigError names the offending key."""
        host = _host(settings)
        port = settings.integer("port", DEFAULT_PORT, minimum=0, maximum=65535)
        keys = _api_keys(settings)
        if not keys and not _is_loopback(host):
            raise settings.error(
                "host",
                f"refusing to listen on {host} without API keys; set platforms.http.api_keys "
                "(or api_keys_env), or use a loopback host such as 127.0.0.1",
            )
        max_body = settings.integer(
            "max_body_bytes", DEFAULT_MAX_BODY_BYTES, minimum=1, maximum=MAX_BODY_BYTES_LIMIT
        )
        header_timeout = settings.number("header_timeout_s", DEFAULT_HEADER_TIMEOUT_S, minimum=0.1)
        if header_timeout > MAX_HEADER_TIMEOUT_S:
            raise settings.error(
                "header_timeout_s", f"must be <= {MAX_HEADER_TIMEOUT_S}, got {header_timeout!r}"
            )
        return cls(
            host,
            port,
            keys,
            max_body,
            header_timeout,
            _cors_origins(settings),
            ParameterPolicy.load(settings),
            settings.boolean("record_stateless", True),
            settings.integer("max_suspended_runs", DEFAULT_MAX_SUSPENDED_RUNS, minimum=1),
            settings.number("suspended_run_ttl_s", DEFAULT_SUSPENDED_RUN_TTL_S, minimum=1),
        )


def _cors_origins(settings: PlatformSettings) -> tuple[str, ...]:
    origins = settings.strings("cors_origins")
    for origin in origins:
        if origin != "*" and not ORIGIN.match(origin):
            raise settings.error(
                "cors_origins",
                f"{origin[:80]!r} is not an origin: write scheme://host[:port] "
                '(no path, no trailing slash), or "*" for any',
            )
    return tuple(origins)


def _host(settings: PlatformSettings) -> str:
    """The host to bind; ``[::1]`` (as in a URL) means ``::1``."""
    host = settings.string("host", DEFAULT_HOST).strip()
    if not (host.startswith("[") or host.endswith("]")):
        return host
    inner = host[1:-1]
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        raise settings.error(
            "host", f"{host!r} is not an IPv6 address in brackets; write it as ::1 or [::1]"
        ) from None
    return inner


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def _api_keys(settings: PlatformSettings) -> tuple[ApiKey, ...]:
    entries = settings.values.get("api_keys", [])
    if not isinstance(entries, list):
        raise settings.error("api_keys", f"{EXPECTED_KEYS}, got a {type(entries).__name__}")
    keys = [_api_key(settings, index, entry) for index, entry in enumerate(entries)]
    env = settings.string("api_keys_env", "")
    if env:
        value = os.environ.get(env, "")
        if not value.strip():
            raise settings.error("api_keys_env", f"environment variable {env} is not set")
        keys.extend(ApiKey.plain(key.strip()) for key in value.split(","))
    accepted = [key for key in keys if key is not None and key.secret]
    names: dict[str, ApiKey] = {}
    for key in accepted:
        if key.name in names:
            same = names[key.name].secret == key.secret
            problem = "the same key is listed twice" if same else f"two keys are named {key.name!r}"
            raise settings.error("api_keys", f"{problem}; give each key once, with its own name")
        names[key.name] = key
    return tuple(accepted)


def _api_key(settings: PlatformSettings, index: int, entry: Any) -> ApiKey | None:
    """One ``api_keys`` entry; None for a blank string."""
    where = settings.key(f"api_keys[{index}]")
    if isinstance(entry, str):
        return ApiKey.plain(entry.strip()) if entry.strip() else None
    if not isinstance(entry, Mapping):
        # Only a number or boolean is shown: anything else might hold a key.
        shown = repr(entry) if isinstance(entry, int | float) else f"a {type(entry).__name__}"
        raise settings.error("api_keys", f"{EXPECTED_KEYS}, got item {shown}")
    unknown = sorted(set(entry) - set(KEY_TABLE))
    if unknown:
        raise ConfigError(
            where, f"unknown key {unknown[0]!r}: a named key is {{name = ..., key_env = ...}}"
        )
    name, env = entry.get("name"), entry.get("key_env")
    if not isinstance(name, str) or not KEY_NAME.match(name):
        raise ConfigError(
            f"{where}.name",
            "expected 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
            f"digit), got {name!r}",
        )
    if not isinstance(env, str) or not env:
        raise ConfigError(f"{where}.key_env", "expected the name of an environment variable")
    secret = os.environ.get(env, "").strip()
    if not secret:
        raise ConfigError(f"{where}.key_env", f"environment variable {env} is not set")
    return ApiKey(name, secret)


#: Largest ``max_body_bytes`` accepted: a chat request is never anywhere near 100 MiB.
MAX_BODY_BYTES_LIMIT = 100 << 20


def declare_settings(register: RegisterSetting) -> None:
    """The keys of ``platforms.http`` for the settings schema (``enabled`` and the Intake's
    keys are every platform's); :meth:`HttpSettings.load` reads them."""
    key = f"platforms.{NAME}."
    register(key + "enabled", bool, description="Serve the API.", expected="true or false")
    register(key + "host", str, DEFAULT_HOST, "Interface to listen on.")
    register(key + "port", int, DEFAULT_PORT, "Port; 0 picks a free one.", minimum=0, maximum=65535)
    register(
        key + "api_keys",
        list,
        [],
        "Bearer keys clients must send: plain strings or {name, key_env} tables.",
        expected="a list of strings (plain keys) or {name, key_env} tables",
    )
    register(key + "api_keys_env", str, "", "Environment variable holding more keys.")
    register(
        key + "max_body_bytes",
        int,
        DEFAULT_MAX_BODY_BYTES,
        "Largest request body accepted.",
        minimum=1,
        maximum=MAX_BODY_BYTES_LIMIT,
    )
    register(
        key + "cors_origins",
        list,
        [],
        "Browser origins allowed to call the API (CORS); none by default.",
        expected='a list of origins such as https://app.example.com, or ["*"]',
    )
    register(
        key + "parameters",
        dict,
        {},
        "Request parameters pinned, defaulted or forbidden: {pin, default, forbid}.",
        expected="a table {pin = {...}, default = {...}, forbid = [...]}",
        open=True,  # its keys are parameter names, checked by ParameterPolicy.load
    )
    register(
        key + "record_stateless",
        bool,
        True,
        "Write stateless conversations' turns to the transcript store.",
        expected="true or false",
    )
    register(
        key + "max_suspended_runs",
        int,
        DEFAULT_MAX_SUSPENDED_RUNS,
        "Most runs kept waiting for a client's tool results; the oldest goes first (failed).",
        minimum=1,
    )
    register(
        key + "suspended_run_ttl_s",
        float,
        DEFAULT_SUSPENDED_RUN_TTL_S,
        "Seconds a run waits for a client's tool results before it ends failed.",
        minimum=1,
    )
    register(
        key + "header_timeout_s",
        float,
        DEFAULT_HEADER_TIMEOUT_S,
        "Seconds a connection may take to send a request's headers.",
        minimum=0.1,
        maximum=MAX_HEADER_TIMEOUT_S,
    )
