"""Logging for applications: loguru sinks, and stdlib logging (openai, mcp, httpx2) routed in.

The library itself never adds a sink; the CLI calls :func:`configure_logging`.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType

from loguru import logger


class InterceptHandler(logging.Handler):
    """Forward stdlib log records to loguru, keeping the caller's location."""

    def emit(self, record: logging.LogRecord) -> None:
        level: str | int
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame: FrameType | None = logging.currentframe()
        depth = 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Enable hermes-core's logs on stderr (JSON lines with ``json=True``)."""
    logger.remove()
    logger.enable("hermes_core")
    if json:
        logger.add(sys.stderr, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}",
            # diagnose would print every frame's local variables: API keys included.
            backtrace=False,
            diagnose=False,
        )
    logging.basicConfig(handlers=[InterceptHandler()], level=logging.WARNING, force=True)
    stdlib_level = {"TRACE": "DEBUG", "SUCCESS": "INFO"}.get(level, level)
    for name in ("openai", "mcp", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(stdlib_level)
