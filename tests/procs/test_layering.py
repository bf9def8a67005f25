"""The bpy-free, torch-free layers stay so: importing them in a fresh interpreter loads neither."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blender_instseg.procs.argv import child_env

CHECK = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
heavy = sorted(m for m in ("bpy", "torch") if m in sys.modules)
print(" ".join(heavy))
"""


@pytest.mark.parametrize("modules", [
    ("blender_instseg.procs", "blender_instseg.procs.child", "blender_instseg.procs.server",
     "blender_instseg.procs.argv"),
    ("blender_instseg.pipeline.stages", "blender_instseg.pipeline.loop", "blender_instseg.pipeline.__main__"),
    ("blender_instseg.generator", "blender_instseg.generator.cli", "blender_instseg.generator.resume",
     "blender_instseg.generator.progress", "blender_instseg.generator.workers"),
])
def test_imports_pull_in_neither_bpy_nor_torch(modules: tuple[str, ...]) -> None:
    res = subprocess.run([sys.executable, "-c", CHECK, *modules], env=child_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"{modules} imported {res.stdout.strip()}"
