"""One tiny mining round end to end with the real children: generator (bpy), trainer and evaluator (torch).

Masks-only 64x64 scenes, a 4-step base model, 2 new images and 2 fine-tuning steps: it proves the
command lines, files and loop.json fit together, not that mining helps (benchmarks/bench_loop.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bpy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GEN = ["--resolution", "64", "--masks-only", "--min-objects", "2", "--max-objects", "4", "--no-preview",
       "--no-depth", "--progress", "none"]


def run(*argv: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_one_tiny_round(tmp_path: Path, torch_python: str) -> None:
    """The generator on this (Blender's) Python, trainer, evaluator and the loop itself on the model side's."""
    for out, n, seed, extra in (("ds", 6, 1, ["--val-fraction", "0.34"]), ("held", 2, 2, [])):
        res = run("scripts/generate.py", "--out", str(tmp_path / out), "--num-images", str(n), "--seed", str(seed),
                  *GEN, *extra)
        assert res.returncode == 0, res.stderr[-500:]
    res = run("-m", "blender_instseg.ml", "train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "base"),
              "--steps", "4", "--image-size", "64", "--batch-size", "2", "--device", "cpu", python=torch_python)
    assert res.returncode == 0, res.stderr[-500:]

    loop = ["-m", "blender_instseg.pipeline", "loop", "--data", str(tmp_path / "ds"), "--run", str(tmp_path / "run"),
            "--init", str(tmp_path / "base" / "last.pt"), "--rounds", "1", "--budget", "2", "--per-seed", "1",
            "--steps-per-round", "2", "--heldout", str(tmp_path / "held"), "--device", "cpu",
            "--python-torch", torch_python, "--python-bpy", sys.executable]
    res = run(*loop, python=torch_python)
    assert res.returncode == 0, res.stderr[-800:]
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "done" and events[-1]["rounds"] == 1
    assert any(e["event"] == "progress" and "round 1/1: generate" in e["phase"] for e in events)
    state = json.loads((tmp_path / "run" / "loop.json").read_text())
    rd = state["rounds"][0]
    assert rd["status"] == "done" and rd["images_added"] == 2
    chosen = rd["stages"]["plan"]["plan"]
    val = json.loads((tmp_path / "ds" / "annotations_val.json").read_text())
    assert {p["seed"] for p in chosen} <= {im["seed"] for im in val["images"]} and len(chosen) == 2
    new = json.loads((tmp_path / "run" / "round_1" / "data" / "annotations.json").read_text())
    assert [im["parent_seed"] for im in new["images"]] == [p["seed"] for p in chosen]
    ckpt = Path(rd["checkpoint_after"])
    assert ckpt.is_file() and rd["heldout_after"]["images"] == 2 and state["start"]["metrics"]["images"] == 2

