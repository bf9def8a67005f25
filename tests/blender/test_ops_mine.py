"""The "Mine Hard Scenes (1 Round)" button: its checks and arguments, and one real round in background mode.

The real round runs the loop on the model side's Python (``torch_python``, as the button does with
the "Python with torch" preference) with the generator as a child of the same kind the panel starts
(``children.panel_generator_argv``, this Blender's Python): tiny masks-only scenes, a few steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def scene(addon, tmp_path: Path):
    s = bpy.context.scene.instseg
    s.dataset_dir = str(tmp_path / "ds")
    s.run_dir = str(tmp_path / "base")
    s.checkpoint = ""
    s.mining_dir = str(tmp_path / "mining")
    s.heldout_dir = ""
    s.mining_budget, s.mining_steps, s.mining_strategy, s.device = 2, 2, "hard", "cpu"
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    state = bpy.context.window_manager.instseg_job
    state.last_error = state.summary = ""
    yield s
    s.dataset_dir = s.run_dir = s.mining_dir = ""


def test_mine_needs_a_val_split_and_a_checkpoint(scene, tmp_path: Path) -> None:
    from blender_instseg.blender.ops import mine

    state = bpy.context.window_manager.instseg_job
    (tmp_path / "ds").mkdir()
    with pytest.raises(RuntimeError, match="no validation split to mine"):
        bpy.ops.instseg.mine_hard_scenes(python=sys.executable)
    (tmp_path / "ds" / "annotations_val.json").write_text("{}")
    with pytest.raises(RuntimeError, match="checkpoint not found"):
        bpy.ops.instseg.mine_hard_scenes(python=sys.executable)
    assert state.last_error.startswith("checkpoint not found") and not state.running

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "last.pt").write_bytes(b"x")
    args = mine.mine_args(bpy.context, "/py/torch", ["blender", "-b", "--"])
    assert args[args.index("--rounds") + 1] == "1" and args[args.index("--strategy") + 1] == "hard"
    assert json.loads(args[args.index("--generator-cmd") + 1]) == ["blender", "-b", "--"]
    assert "--heldout" not in args
    # each press asks for one round more than loop.json has finished (an unfinished one is completed)
    (tmp_path / "mining").mkdir()
    (tmp_path / "mining" / "loop.json").write_text(json.dumps({"rounds": [{"status": "done"},
                                                                          {"status": "running"}]}))
    args = mine.mine_args(bpy.context, "/py/torch", ["blender", "-b", "--"])
    assert args[args.index("--rounds") + 1] == "2"
    scene.heldout_dir = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="held-out set not found"):
        mine.mine_args(bpy.context, "/py/torch", [])


@pytest.mark.slow
def test_one_round_from_the_button(scene, tmp_path: Path, torch_python: str) -> None:
    gen = [sys.executable, "scripts/generate.py", "--resolution", "64", "--masks-only", "--min-objects", "2",
           "--max-objects", "4", "--no-preview", "--no-depth", "--progress", "none"]
    for cmd in ([*gen, "--out", str(tmp_path / "ds"), "--num-images", "6", "--seed", "1", "--val-fraction", "0.34"],
                [torch_python, "-m", "blender_instseg.ml", "train", "--data", str(tmp_path / "ds"), "--out",
                 str(tmp_path / "base"), "--steps", "3", "--image-size", "64", "--batch-size", "2", "--device", "cpu"]):
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-500:]
    state = bpy.context.window_manager.instseg_job
    assert bpy.ops.instseg.mine_hard_scenes(python=torch_python) == {"FINISHED"}, state.last_error
    assert state.last_error == "" and state.status == "mine finished" and state.progress == 1.0
    loop = json.loads((tmp_path / "mining" / "loop.json").read_text())
    assert [rd["status"] for rd in loop["rounds"]] == ["done"]
    ckpt = loop["rounds"][0]["checkpoint_after"]
    assert Path(ckpt).is_file() and state.summary == f"round 1; checkpoint: {ckpt}"
    gen_cmd = loop["rounds"][0]["stages"]["generate"]["command"]
    assert gen_cmd[-2:] == ["--variants-of", str(tmp_path / "mining" / "round_1" / "plan.json")]
