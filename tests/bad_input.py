"""What every bad-input table checks: the refused command wrote nothing and said one ``error:`` line."""

from __future__ import annotations

import os
from pathlib import Path


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``roots`` (links not followed) with its size and modification time:
    equal before and after a command means it created, changed and removed nothing there."""
    seen: dict[str, tuple[int, int]] = {}
    for root in roots:
        for folder, dirs, names in os.walk(root):
            for name in dirs + names:
                path = Path(folder) / name
                st = path.lstat()
                seen[str(path)] = (st.st_size, st.st_mtime_ns)
    return seen


def assert_one_error_line(code: int, stderr: str, needle: str = "") -> None:
    """Exit 2, exactly one non-empty stderr line, starting ``error: `` (holding ``needle``), no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert needle in lines[0], (needle, stderr)
    assert "Traceback" not in stderr
