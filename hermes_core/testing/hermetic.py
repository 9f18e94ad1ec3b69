"""Opt-in pytest plugin: every test of a suite gets its own user data dir.

A suite's ``conftest.py`` turns it on beside the kit::

    pytest_plugins = ["hermes_core.testing", "hermes_core.testing.hermetic"]
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _data_dir_of_its_own(hermetic_data_dir: Path) -> None:
    """The kit's ``hermetic_data_dir``, for every test."""
