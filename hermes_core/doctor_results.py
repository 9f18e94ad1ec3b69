"""The report of ``hermes-core doctor``: one :class:`CheckResult` per checked item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hermes_core.errors import EXIT_CONFIG
from hermes_core.redaction import redact_text

#: Exit codes: all checks passed, something is broken, the settings themselves are invalid.
EXIT_OK, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class CheckResult:
    """One line of the report.

    :ivar check: what was checked, e.g. ``provider openai endpoint``.
    :ivar ok: True (passed), False (broken) or None (skipped: something it needs failed).
    :ivar detail: one line saying what was found.
    :ivar fix: for a failed check, what to do about it.
    """

    check: str
    ok: bool | None
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``doctor --json``."""
        return {"check": self.check, "ok": self.ok, "detail": self.detail, "fix": self.fix}


# Details quote URLs, server output and upstream answers: each result is redacted as made.
def passed(check: str, detail: str) -> CheckResult:
    """A passing check."""
    return CheckResult(check, True, redact_text(detail))


def failed(check: str, detail: str, fix: str) -> CheckResult:
    """A failing check, with what to do about it."""
    return CheckResult(check, False, redact_text(detail), redact_text(fix))


def skipped(check: str, detail: str) -> CheckResult:
    """A check that could not run because something it needs is broken."""
    return CheckResult(check, None, redact_text(detail))


@dataclass(frozen=True)
class Report:
    """Every check's result, in order, and whether the settings were valid."""

    results: list[CheckResult]
    settings_valid: bool

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [result for result in self.results if result.ok is False]

    @property
    def exit_code(self) -> int:
        """2 when the settings are invalid, else 1 when any check failed, else 0."""
        if not self.settings_valid:
            return EXIT_CONFIG
        return EXIT_FAILED if self.failures else EXIT_OK


def one_line(text: str) -> str:
    return " ".join(text.split())
