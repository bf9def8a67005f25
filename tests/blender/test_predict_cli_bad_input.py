"""predict_cli's bad-input table (issue 24): every case is exit 2, exactly one stderr line starting
``error:`` (one ``error`` event on stdout), no traceback, and nothing created or changed, checked before
the view is rendered: arguments, --out, the .blend, the config, a --predictions file's content, then
the checkpoint and the device in the model process. Grow it with every new flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blender_instseg.core import protocol
from tests.bad_input import assert_one_error_line, snapshot

pytestmark = pytest.mark.bpy

ROOT = Path(__file__).resolve().parents[2]
RES = "32"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, torch_python: str) -> Path:
    """A model-only checkpoint (built, not trained: the model process only has to load it) and damaged
    copies, prediction files, a fake .blend, a bad config."""
    root = tmp_path_factory.mktemp("predict_cli_bad")
    make = ("import sys, torch; from blender_instseg.ml.checkpoint import save_checkpoint; "
            "from blender_instseg.ml.models import architecture, build_model; "
            "cfg = architecture('solov2')[0](num_classes=1, fpn_channels=32); "
            "save_checkpoint(sys.argv[1], {'model': build_model(cfg.to_dict()).state_dict(), "
            "'model_config': cfg.to_dict(), 'categories': [{'id': 1, 'name': 'cube'}]})")
    proc = subprocess.run([torch_python, "-c", make, str(root / "model.pt")], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    raw = (root / "model.pt").read_bytes()
    (root / "truncated.pt").write_bytes(raw[: len(raw) // 3])
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    (root / "flipped.pt").write_bytes(bytes(flipped))
    (root / "random.pt").write_bytes(bytes(range(256)) * 5)
    (root / "a_file").write_text("x")
    (root / "fake.blend").write_text("not a blend")
    (root / "bad.toml").write_text("[objects\ncount = ")
    rle = {"size": [int(RES), int(RES)], "counts": "0"}
    preds = {
        "nan": [{"segmentation": rle, "score": float("nan"), "category_id": 1}],
        "five": [{"segmentation": rle, "score": 5, "category_id": 1}],
        "text_score": [{"segmentation": rle, "score": "high", "category_id": 1}],
        "size": [{"segmentation": {"size": [64, 64], "counts": "0"}, "score": 0.9, "category_id": 1}],
        "no_seg": [{"score": 0.9, "category_id": 1}],
        "not_list": {"images": []},
        "float_cat": [{"segmentation": rle, "score": 0.5, "category_id": 1.5}],
    }
    for name, obj in preds.items():
        (root / f"{name}.json").write_text(json.dumps(obj))  # NaN is written as the bare NaN JSON allows
    (root / "broken.json").write_text("[{")
    (root / "ok.json").write_text("[]")
    return root


C = ["--checkpoint", "{ws}/model.pt"]
OUT = ["--out", "{tmp}/view"]
FAST = ["--resolution", RES, "--samples", "1"]
P = ["--predictions", "{ws}/ok.json"]

CASES: dict[str, tuple[list[str], str]] = {
    "out empty": ([*C, "--out", "", *FAST], "--out is empty"),
    "out is a file": ([*C, "--out", "{ws}/a_file", *FAST], "not a folder"),
    "out under a file": ([*C, "--out", "{ws}/a_file/view", *FAST], "which is a file"),
    "no checkpoint": ([*OUT, *FAST], "--checkpoint is required"),
    "checkpoint empty": (["--checkpoint", "", *OUT, *FAST], "--checkpoint is empty"),
    "checkpoint missing": (["--checkpoint", "{ws}/nope.pt", *OUT, *FAST], "checkpoint not found"),
    "checkpoint random": (["--checkpoint", "{ws}/random.pt", *OUT, *FAST], "is not a checkpoint of this project"),
    "checkpoint truncated": (["--checkpoint", "{ws}/truncated.pt", *OUT, *FAST], "is not a checkpoint"),
    "checkpoint bit flipped": (["--checkpoint", "{ws}/flipped.pt", *OUT, *FAST], "corrupt checkpoint"),
    "checkpoint is a folder": (["--checkpoint", "{ws}", *OUT, *FAST], "is not a checkpoint of this project"),
    "device cuda without one": ([*C, *OUT, *FAST, "--device", "cuda"], "torch sees no CUDA GPU"),
    "device unknown": ([*C, *OUT, *FAST, "--device", "tpu"], "invalid choice"),
    "match iou 5": ([*P, *OUT, *FAST, "--match-iou", "5"], "--match-iou must be in [0, 1]"),
    "match iou nan": ([*P, *OUT, *FAST, "--match-iou", "nan"], "--match-iou must be in [0, 1]"),
    "score threshold 5": ([*P, *OUT, *FAST, "--score-threshold", "5"], "--score-threshold must be in [0, 1]"),
    "score threshold -1": ([*P, *OUT, *FAST, "--score-threshold", "-1"], "--score-threshold must be in [0, 1]"),
    "resolution 0": ([*P, *OUT, "--resolution", "0"], "--resolution must be in"),
    "samples 0": ([*P, *OUT, "--resolution", RES, "--samples", "0"], "--samples must be >= 1"),
    "resolution not a number": ([*P, *OUT, "--resolution", "big"], "invalid int value"),
    "unknown flag": ([*P, *OUT, *FAST, "--bogus"], "unrecognized arguments"),
    "predictions missing": (["--predictions", "{ws}/nope.json", *OUT, *FAST], "predictions file not found"),
    "predictions not JSON": (["--predictions", "{ws}/broken.json", *OUT, *FAST], "not valid JSON"),
    "predictions not a list": (["--predictions", "{ws}/not_list.json", *OUT, *FAST], "not a COCO results list"),
    "predictions NaN score": (["--predictions", "{ws}/nan.json", *OUT, *FAST], "scores must be numbers in [0, 1]"),
    "predictions score 5": (["--predictions", "{ws}/five.json", *OUT, *FAST], "scores must be numbers in [0, 1]"),
    "predictions text score": (["--predictions", "{ws}/text_score.json", *OUT, *FAST], "scores must be numbers"),
    "predictions mask size": (["--predictions", "{ws}/size.json", *OUT, *FAST], "differs from the rendered view"),
    "predictions no segmentation": (["--predictions", "{ws}/no_seg.json", *OUT, *FAST], "no RLE 'segmentation'"),
    "predictions category not int": (["--predictions", "{ws}/float_cat.json", *OUT, *FAST], "not an integer"),
    "frames words": ([*C, *OUT, *FAST, "--frames", "all"], "--frames must be A-B"),
    "frames backwards": ([*C, *OUT, *FAST, "--frames", "3-2"], "the last frame is before the first"),
    "frames with predictions": ([*P, *OUT, *FAST, "--frames", "1-2"], "cannot be combined with --frames"),
    "blend missing": ([*P, *OUT, *FAST, "--blend", "{ws}/nope.blend"], "blend file not found"),
    "blend not a blend": ([*P, *OUT, *FAST, "--blend", "{ws}/fake.blend"], "is not a .blend file"),
    "config missing": ([*P, *OUT, *FAST, "--config", "{ws}/nope.toml"], "not found"),
    "config broken": ([*P, *OUT, *FAST, "--config", "{ws}/bad.toml"], "bad.toml"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_before_rendering(name: str, ws: Path, tmp_path: Path, torch_python: str) -> None:
    argv, needle = CASES[name]
    argv = [a.replace("{ws}", str(ws)).replace("{tmp}", str(tmp_path)) for a in argv]
    before = snapshot(ws, tmp_path)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}  # "no GPU" on any machine
    proc = subprocess.run([sys.executable, "-m", "blender_instseg.blender.ops.predict_cli", *argv, "--python",
                           torch_python], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert_one_error_line(proc.returncode, proc.stderr, needle)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [protocol.parse_line(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e.event for e in errors] == ["error"] and errors[0].message == lines[0].removeprefix("error: ")
    assert snapshot(ws, tmp_path) == before
