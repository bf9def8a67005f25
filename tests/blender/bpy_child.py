"""Test fixtures' files written by Blender itself, in a child process (as a user's exporter would)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def run_bpy_script(script: str, folder: Path, *args: str) -> None:
    """Run ``script`` (Python that imports bpy) with ``args`` in a child process whose Blender user
    folder is inside ``folder``; the script is saved there too. A failing script fails the test with
    its stderr. Why a child: exporters and factory resets must not touch the test process's Blender."""
    path = folder / "make_fixture.py"
    path.write_text(textwrap.dedent(script), encoding="utf-8")
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(folder / "blender-user"))
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
