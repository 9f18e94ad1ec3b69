"""hermes-core: a pluggy plugin framework for running LLM agents behind chat platforms.

Plugin authors need only ``from hermes_core import hookimpl``.
"""

from __future__ import annotations

from importlib import metadata

import pluggy
from loguru import logger

from hermes_core.hookspecs import PROJECT_NAME

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]

#: Marks a function as a hermes-core hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

try:
    __version__ = metadata.version("hermes-core")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# A library stays silent until its application says otherwise; the CLI enables this.
logger.disable("hermes_core")
