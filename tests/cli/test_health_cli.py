"""``hermes-core health`` and the doctor's health rows, on settings files."""

from __future__ import annotations

import json
from pathlib import Path

from hermes_core.doctor import run_checks
from hermes_core.testing import cli_env, hermes_core

SETTINGS = """
[agent]
model = "main:gpt-x"
fallbacks = ["spare:gpt-y"]

[providers.main]
base_url = "http://127.0.0.1:9/v1"

[providers.main.breaker]
failures = 5
cooldown_s = 0.5
probe = "ACTIVE"

[providers.spare]
base_url = "http://127.0.0.1:9/v1"

[providers.spare.breaker]
enabled = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_health_prints_each_model_with_its_breaker_settings(tmp_path: Path) -> None:
    done = hermes_core(
        "health", "--settings", str(write(tmp_path, SETTINGS)), env=cli_env(), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["models"] == [
        {
            "model": "main:gpt-x",
            "setting": "agent.model",
            "breaker": {
                "enabled": True,
                "failures": 5,
                "cooldown_s": 0.5,
                "max_cooldown_s": 900.0,
                "probe": "active",
            },
        },
        {
            "model": "spare:gpt-y",
            "setting": "agent.fallbacks[0]",
            "breaker": {
                "enabled": False,
                "failures": 3,
                "cooldown_s": 30.0,
                "max_cooldown_s": 900.0,
                "probe": "passive",
            },
        },
    ]
    assert "/status" in report["live_state"]


def test_health_refuses_a_bad_breaker_setting_with_one_line(tmp_path: Path) -> None:
    bad = SETTINGS.replace('probe = "ACTIVE"', 'probe = "sometimes"')
    done = hermes_core(
        "health", "--settings", str(write(tmp_path, bad)), env=cli_env(), cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hermes-core: error: providers.main.breaker.probe: expected passive or active, "
        "got 'sometimes'"
    ]
    assert done.stdout == ""


async def test_doctor_shows_each_providers_health_policy(tmp_path: Path) -> None:
    report = await run_checks(write(tmp_path, SETTINGS), entry_points=False)
    rows = {result.check: result for result in report.results}
    main, spare = rows["provider main health"], rows["provider spare health"]
    assert main.ok is True and "after 5 consecutive failures" in main.detail
    assert "0.5-900 s, then the gateway probes" in main.detail
    assert spare.ok is True and spare.detail.startswith("off (providers.spare.breaker.enabled")
