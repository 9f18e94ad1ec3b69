"""``doctor``'s provider checks: where the key comes from, whether ``GET {base_url}/models``
answers, and whether the configured models are listed."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence

from hermes_core.doctor_results import CheckResult, failed, one_line, passed, skipped
from hermes_core.health import BreakerPolicy
from hermes_core.settings import Config, ProviderConfig

#: Seconds the provider probe (``GET /models``) waits: a doctor must answer quickly.
PROBE_TIMEOUT_S = 5.0
#: Ids shown when a configured model is missing from a provider's list.
LISTED_SHOWN = 8
SKIPPED_NEEDS_ENDPOINT = "skipped: the endpoint did not answer with a model list"


def configured_models(config: Config, provider: str) -> list[tuple[str, str]]:
    """``(settings key, model name)`` of every configured model served by ``provider``."""
    refs = [("agent.model", config.model)] + [
        (f"agent.fallbacks[{index}]", ref) for index, ref in enumerate(config.fallbacks)
    ]
    return [(key, ref.model) for key, ref in refs if ref.provider == provider]


def _key_result(provider: ProviderConfig) -> CheckResult:
    check = f"provider {provider.name} key"
    env = provider.options.get("api_key_env")
    if env:
        # Settings validation already failed if the variable were empty.
        return passed(check, f"set, from ${env}")
    if provider.api_key:
        return passed(check, f"set, from providers.{provider.name}.api_key")
    return passed(check, "none configured (fine for a local server)")


async def check_provider(
    provider: ProviderConfig,
    models: Sequence[tuple[str, str]],
    known_types: Collection[str],
    timeout_s: float = PROBE_TIMEOUT_S,
    *,
    type_problem: str | None = None,
) -> list[CheckResult]:
    """Key source, reachability of ``GET {base_url}/models``, and the configured models.

    ``models`` are ``(settings key, model)`` pairs (:func:`configured_models`);
    ``known_types`` are the provider types plugins registered; ``type_problem`` says why
    the provider's type cannot be used (:attr:`hermes_core.providers.ProviderType.problem`).
    """
    name = provider.name
    endpoint, listing = f"provider {name} endpoint", f"provider {name} models"
    results = [_key_result(provider)]
    if provider.type not in known_types:
        known = ", ".join(sorted(known_types)) or "none"
        fix = f"correct providers.{name}.type, or install the plugin that provides it"
        results.append(
            failed(endpoint, f"unknown provider type {provider.type!r} (known: {known})", fix)
        )
        return [*results, skipped(listing, "skipped: unknown provider type")]
    if type_problem is not None:
        fix = f"update the plugin, or set providers.{name}.type to another type"
        results.append(failed(endpoint, type_problem, fix))
        return [*results, skipped(listing, "skipped: unusable provider type")]
    if not provider.base_url:
        detail = f"not checked: a {provider.type!r} provider without base_url"
        return [*results, skipped(endpoint, detail), skipped(listing, detail)]
    url = provider.base_url.rstrip("/") + "/models"
    fetched = await _get_models(url, provider.api_key, timeout_s)
    if isinstance(fetched, str):  # no HTTP answer
        fix = f"check providers.{name}.base_url and that the server is running and reachable"
        results.append(failed(endpoint, f"cannot reach {url}: {fetched}", fix))
        return [*results, skipped(listing, SKIPPED_NEEDS_ENDPOINT)]
    status, body, elapsed = fetched
    if status in (401, 403):
        env = provider.options.get("api_key_env")
        if env:
            fix = f"check the key in ${env}"
        elif provider.api_key:
            fix = f"check providers.{name}.api_key"
        else:
            fix = f"set providers.{name}.api_key_env to the variable holding the key"
        results.append(failed(endpoint, f"{url} refused the key (HTTP {status})", fix))
        return [*results, skipped(listing, SKIPPED_NEEDS_ENDPOINT)]
    if status == 404:
        results.append(passed(endpoint, f"reachable ({elapsed:.2f}s)"))
        return [*results, passed(listing, f"model list not supported (404 on {url})")]
    if status != 200:
        fix = f"check providers.{name}.base_url and the server's health"
        results.append(failed(endpoint, f"{url} answered HTTP {status}", fix))
        return [*results, skipped(listing, SKIPPED_NEEDS_ENDPOINT)]
    results.append(passed(endpoint, f"reachable ({elapsed:.2f}s)"))
    return [*results, _models_result(listing, name, url, body, models)]


async def _get_models(url: str, api_key: str, timeout_s: float) -> tuple[int, bytes, float] | str:
    """``(status, body, seconds)`` of ``GET url``, or one line saying why there was no answer."""
    import httpx2

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx2.AsyncClient(timeout=timeout_s) as client:
            started = time.perf_counter()  # the request alone, not the client's TLS setup
            response = await client.get(url, headers=headers)
    except httpx2.TimeoutException:
        return f"no answer within {timeout_s:g}s"
    except (httpx2.HTTPError, httpx2.InvalidURL) as error:
        return one_line(f"{type(error).__name__}: {error}") or type(error).__name__
    return response.status_code, response.content, time.perf_counter() - started


def _models_result(
    check: str, provider: str, url: str, body: bytes, models: Sequence[tuple[str, str]]
) -> CheckResult:
    try:
        listed = [str(entry["id"]) for entry in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        fix = f"check providers.{provider}.base_url points at an OpenAI-compatible API (.../v1)"
        return failed(check, f"{url} did not answer with an OpenAI model list", fix)
    if not models:
        return passed(check, "no configured model uses this provider")
    missing = [(key, model) for key, model in models if model not in listed]
    if not missing:
        return passed(check, "listed: " + ", ".join(dict.fromkeys(m for _, m in models)))
    shown = ", ".join(listed[:LISTED_SHOWN]) + (", …" if len(listed) > LISTED_SHOWN else "")
    detail = "not listed by the endpoint: " + ", ".join(f"{m} ({k})" for k, m in missing)
    keys = " and ".join(dict.fromkeys(key for key, _ in missing))
    return failed(check, detail, f"set {keys} to a listed model (listed: {shown or 'none'})")


def health_result(name: str, policy: BreakerPolicy) -> CheckResult:
    """The model-health policy of provider ``name``: what opens a breaker, and for how long."""
    check = f"provider {name} health"
    if not policy.enabled:
        return passed(check, f"off (providers.{name}.breaker.enabled = false): no model skipped")
    probe = "the gateway probes" if policy.active_probe else "the next run probes"
    return passed(
        check,
        f"on: a model opens after {policy.failures} consecutive failures, skipped "
        f"{policy.cooldown_s:g}-{policy.max_cooldown_s:g} s, then {probe}; the live state is "
        "in /status and hermes_model_health",
    )
