"""Train -> Evaluate -> Predict View through the operators with the real model process (torch).

A tiny run (one epoch of four 64x64 shapes images) is enough to prove the contract between the
panel and ``python -m blender_instseg.ml``: the arguments the operators pass are accepted, progress
events reach the panel state, the checkpoint, metrics.json and predictions file come back and are
read. Model quality is tested in tests/ml.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.bpy, pytest.mark.slow]

import bpy  # noqa: E402


def _cube_view() -> None:
    """A scene to predict on: one cube in front of an orthographic camera, 64x64."""
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    sc = bpy.context.scene
    bpy.ops.mesh.primitive_cube_add()
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", 4.0, (0, 0, 10)
    sc.collection.objects.link(cam)
    sc.camera = cam
    sc.render.resolution_x = sc.render.resolution_y = 64
    sc.render.resolution_percentage = 100


def test_train_evaluate_predict_with_the_real_model(addon, torch_python: str, tmp_path: Path) -> None:
    from tests.shapes import make_shapes_dataset

    gt = make_shapes_dataset(tmp_path / "shapes", n_images=4, size=64, seed=2)
    s = bpy.context.scene.instseg
    s.dataset_dir = str(gt.parent)
    s.run_dir = str(tmp_path / "run")
    s.checkpoint = ""
    s.predictions_path = ""
    s.epochs = 1
    s.device = "cpu"
    s.score_threshold = 0.0
    s.auto_threshold = False
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    state = bpy.context.window_manager.instseg_job

    assert bpy.ops.instseg.train(python=torch_python) == {"FINISHED"}, state.last_error
    assert state.last_error == "" and state.progress == 1.0 and state.has_loss and state.loss > 0
    assert (tmp_path / "run" / "last.pt").is_file()
    assert state.summary == f"checkpoint: {tmp_path / 'run' / 'last.pt'}"

    assert bpy.ops.instseg.evaluate(python=torch_python) == {"FINISHED"}, state.last_error
    assert state.has_metrics and (tmp_path / "run" / "eval" / "metrics.json").is_file()
    assert 0.0 <= state.mask_ap <= 1.0 and 0.0 <= state.boundary_ap <= 1.0

    _cube_view()
    s.predict_samples = 1
    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error
    out = tmp_path / "out" / "predict"
    assert (out / "predictions.json").is_file() and (out / "overlay.png").is_file()
    assert state.summary.endswith("objects missed") and state.status == "predict finished"
    image = bpy.data.images["InstSeg Overlay"]
    assert tuple(image.size) == (64, 64)


def test_predict_view_before_any_training_uses_the_bundled_weights(addon, torch_python: str, tmp_path: Path) -> None:
    """No run and no Checkpoint: Predict View runs the shipped class-agnostic weights, every object "object"."""
    import json

    s = bpy.context.scene.instseg
    s.dataset_dir, s.run_dir, s.checkpoint, s.predictions_path = "", str(tmp_path / "run"), "", ""
    s.device, s.score_threshold, s.auto_threshold, s.predict_samples = "cpu", 0.0, False, 1
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    state = bpy.context.window_manager.instseg_job
    _cube_view()
    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error
    assert "pretrained weights: objects of any kind" in state.summary
    preds = json.loads((tmp_path / "out" / "predict" / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} <= {1}
    s.checkpoint = str(tmp_path / "missing.pt")  # a Checkpoint set to a missing file is never replaced
    with pytest.raises(RuntimeError, match="checkpoint not found"):
        bpy.ops.instseg.predict_view(python=torch_python)
