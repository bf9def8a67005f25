"""blender.children: the generator command this Blender starts, run for real (module mode: this Python)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy  # importing blender_instseg.blender imports bpy

from blender_instseg.blender import children  # noqa: E402
from blender_instseg.procs.argv import child_env, package_name  # noqa: E402
from blender_instseg.procs.child import run_blocking  # noqa: E402


def test_panel_generator_bootstrap_runs_main_of_the_package() -> None:
    argv = children.panel_generator_argv(["--help"], binary_path="")
    assert argv[0] == sys.executable and argv[-2:] == ["--", "--help"]
    boot = argv[argv.index("-c") + 1]
    assert package_name() in boot
    binary = children.panel_generator_argv(["--seed", "3"], binary_path="/opt/blender/blender")
    assert binary[:2] == ["/opt/blender/blender", "-b"] and binary[-3:] == ["--", "--seed", "3"]
    assert "--factory-startup" not in binary  # the user's preferences load: the installed extension and its wheels
    seen = []
    res = run_blocking(argv, seen.append, env=child_env(), name="generate", timeout=120, require_done=False)
    assert res.ok, res.error
    assert any(ev.message.startswith("usage: generate.py") for ev in seen)


def test_worker_command_is_this_python_with_the_parents_dependencies() -> None:
    import cv2

    argv = children.worker_generator_argv(["--seed", "3"])
    assert not children.running_in_blender_binary()
    assert argv[:3] == [sys.executable, "-u", "-c"] and argv[-3:] == ["--", "--seed", "3"]
    assert repr(str(Path(cv2.__file__).resolve().parents[1])) in argv[3]  # a Blender binary ignores PYTHONPATH
