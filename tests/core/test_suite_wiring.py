"""make test runs the folders scripts/run_tests.sh names: a test folder it forgets would never run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_folder_is_in_a_run() -> None:
    script = (ROOT / "scripts" / "run_tests.sh").read_text(encoding="utf-8")
    named = set(re.findall(r"\btests/(\w+)", script))
    folders = {p.parent.name for p in (ROOT / "tests").glob("*/test_*.py")}
    assert folders and folders <= named, f"not in any run of scripts/run_tests.sh: {sorted(folders - named)}"
    assert not list((ROOT / "tests").glob("test_*.py")), "tests/ itself is in no run: put tests in a subfolder"
