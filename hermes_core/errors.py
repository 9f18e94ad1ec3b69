"""Exceptions that cross module boundaries.

Each carries a one-line, user-facing message: the CLI prints ``str(error)`` and nothing else.
"""

from __future__ import annotations


class HermesError(Exception):
    """Base class for every error hermes-core raises on purpose."""


#: The exit code of every command that ends on a :class:`ConfigError`.
EXIT_CONFIG = 2


class ConfigError(HermesError):
    """A setting is missing, malformed or inconsistent. The CLI exits with :data:`EXIT_CONFIG`."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class PluginError(HermesError):
    """A plugin could not be imported, registered or used as declared."""
