"""Logging for applications: loguru sinks, and stdlib logging (openai, mcp, httpx2) routed in.

The library itself never adds a sink; the CLI calls :func:`configure_logging`. Every record,
stdlib ones included, passes :func:`redact_record` first, so no sink ever receives a secret.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import FrameType
from typing import TYPE_CHECKING

from loguru import logger

from hermes_core.redaction import redact_text

if TYPE_CHECKING:
    from loguru import Record


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


def redact_record(record: Record) -> None:
    """A loguru patcher: secrets out of the message, the bound extras and the exception.

    The exception (its chained causes too: an SDK error under a ProviderError may quote the
    upstream body) is formatted here and appended to the message, since an exception object's
    text cannot be changed for the sinks that format it later.
    """
    record["message"] = redact_text(record["message"])
    for name, value in record["extra"].items():
        if isinstance(value, str):
            record["extra"][name] = redact_text(value)
    if record["exception"] is not None:
        type_, value, tb = record["exception"]
        text = "".join(traceback.format_exception(type_, value, tb)).rstrip("\n")
        record["message"] += "\n" + redact_text(text)
        record["exception"] = None


def install_redaction() -> None:
    """Pass every loguru record through :func:`redact_record` (applications that add their
    own sinks without :func:`configure_logging` call this)."""
    logger.configure(patcher=redact_record)


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Enable hermes-core's logs on stderr (JSON lines with ``json=True``), secrets redacted."""
    logger.remove()
    install_redaction()
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
