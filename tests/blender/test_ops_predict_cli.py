"""``python -m blender_instseg.blender.ops.predict_cli`` (Predict View for scripts and the demo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_instseg.core import protocol

pytestmark = pytest.mark.bpy

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> tuple[int, list[protocol.Event], str]:
    proc = subprocess.run([sys.executable, "-m", "blender_instseg.blender.ops.predict_cli", *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    events = [protocol.parse_line(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    rc, events, err = _run(tmp_path, "--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "missing.pt"))
    assert rc == 2 and err.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'missing.pt'}"]
    assert events[-1].event == "error"
    rc, _, err = _run(tmp_path, "--out", str(tmp_path / "o"), "--predictions", str(tmp_path / "p.json"),
                      "--blend", str(tmp_path / "nope.blend"))
    assert rc == 2 and "not found" in err and "Traceback" not in err


def test_generator_scene_with_given_predictions(tmp_path: Path) -> None:
    """Empty predictions on a procedural scene: every object is 'missed', files and .blend are written."""
    preds = tmp_path / "none.json"
    preds.write_text("[]")
    out = tmp_path / "view"
    rc, events, err = _run(tmp_path, "--predictions", str(preds), "--out", str(out), "--seed", "4",
                           "--resolution", "48", "--samples", "1", "--save-blend")
    assert rc == 0, err
    done = events[-1]
    assert done.event == "done" and done.get("selected") == [] and done.get("matched") == []
    assert len(done.get("missed")) >= 1 and all(name.startswith("inst_") for name in done.get("missed"))
    assert (out / "view.png").is_file() and (out / "overlay.png").is_file() and (out / "scene.blend").is_file()
    import cv2

    view = cv2.imread(str(out / "view.png"))
    overlay = cv2.imread(str(out / "overlay.png"))
    assert view.shape == overlay.shape == (48, 48, 3)
    assert np.array_equal(view, overlay)  # nothing predicted: the overlay is the bare view
    assert json.loads(preds.read_text()) == []
