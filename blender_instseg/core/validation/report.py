"""What ``validate`` collects (``ValidationReport``) and the value checks its checkers share.

Problems are collected, not raised, so one run lists all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: stored error/warning messages per report; the rest are only counted
MAX_STORED = 1000


@dataclass
class ValidationReport:
    """Outcome of ``validate_dataset``: ``ok`` when there are no errors."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error_count: int = 0
    warning_count: int = 0

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED:
            self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_STORED:
            self.warnings.append(message)


def is_int(v: Any) -> bool:
    """An integer as JSON means it (a bool is not one)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def positive_int(v: Any) -> int | None:
    return int(v) if is_int(v) and v > 0 else None


def is_number(v: Any) -> bool:
    """A finite int or float (a bool is not one)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
