"""Predict View over a frame range (``ops.predict_frames``, ``predict_cli --frames``) with real bpy/Cycles.

A 4-frame animation of three cubes under an orthographic camera; "Runner" leaves the view after
frame 2. Ground-truth masks given as the per-frame predictions make the answer exact (one frame's
file leaves Runner out, so "found" and "in view" differ); the real model (a built, untrained
checkpoint on the torch child) checks the warm server, the timer path and Cancel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

RES = 64
FRAMES = (1, 4)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def scene(addon, tmp_path: Path):
    """Left and Right stay; Runner is in the middle for frames 1-2 and far outside the view from frame 3."""
    from blender_instseg.blender.children import SERVERS

    SERVERS.stop_all()
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    sc = bpy.context.scene
    mesh = bpy.data.meshes.new("cube_mesh")
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bm.to_mesh(mesh)
    bm.free()
    for name, x in (("Left", -2.0), ("Runner", 0.0), ("Right", 2.0)):
        ob = bpy.data.objects.new(name, mesh)
        ob.location = (x, 0.0, 0.0)
        sc.collection.objects.link(ob)
    runner = sc.objects["Runner"]
    sc.frame_set(1)
    runner.keyframe_insert("location", frame=2)
    runner.location = (0.0, 30.0, 0.0)
    runner.keyframe_insert("location", frame=3)  # no whole frame between the keys: no easing to care about
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("cam"))
    cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", 7.0, (0.0, 0.0, 10.0)
    sc.collection.objects.link(cam)
    sc.camera = cam
    sc.collection.objects.link(bpy.data.objects.new("Sun", bpy.data.lights.new("sun", "SUN")))
    sc.render.resolution_x = sc.render.resolution_y = RES
    sc.render.resolution_percentage = 100
    sc.frame_start, sc.frame_end = FRAMES
    s = sc.instseg
    s.predict_samples = 1
    s.score_threshold = 0.3
    s.match_iou_threshold = 0.5
    s.predict_frames = False
    s.predict_frame_start = s.predict_frame_end = 0
    s.run_dir = str(tmp_path / "run")
    s.dataset_dir = str(tmp_path / "dataset")
    s.checkpoint = ""
    s.show_in_camera = True
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    bpy.ops.instseg.clear_overlay()
    # the artist's state the run must give back
    for ob in sc.objects:
        ob.select_set(ob.name == "Right")
    bpy.context.view_layer.objects.active = sc.objects["Right"]
    sc.objects["Left"].pass_index = 7
    sc.frame_set(3)
    yield sc
    s.predict_frames = False
    SERVERS.stop_all()


def _state(sc) -> tuple:
    return (sc.frame_current, sorted(o.name for o in sc.objects if o.select_get()),
            bpy.context.view_layer.objects.active.name, {o.name: o.pass_index for o in sc.objects})


def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def _ground_truth_predictions(sc, folder: Path, leave_out: tuple[str, int]) -> None:
    """frame_NNNN.json per frame: every visible object's exact mask as a prediction, but ``leave_out``."""
    from blender_instseg.blender.ops.view_render import render_view

    folder.mkdir()
    keep = sc.frame_current
    for frame in range(FRAMES[0], FRAMES[1] + 1):
        sc.frame_set(frame)
        view = render_view(bpy.context, samples=1)
        preds = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": _rle(view.id_map == i)}
                 for i in np.unique(view.id_map) if i and (view.index_to_object[int(i)], frame) != leave_out]
        (folder / f"frame_{frame:04d}.json").write_text(json.dumps(preds))
    sc.frame_set(keep)


def test_given_predictions_per_frame_give_exact_counts_a_scrubbable_sequence_and_the_scene_back(
        scene, tmp_path: Path) -> None:
    from blender_instseg.blender.ui import overlay as ov

    given = tmp_path / "given"
    _ground_truth_predictions(scene, given, leave_out=("Runner", 2))
    before = _state(scene)
    out = tmp_path / "frames"
    state = bpy.context.window_manager.instseg_job
    assert bpy.ops.instseg.predict_frames(predictions_dir=str(given), output_dir=str(out)) == {"FINISHED"}, \
        state.last_error
    assert _state(scene) == before

    frames = range(FRAMES[0], FRAMES[1] + 1)
    for sub, ext in (("views", "png"), ("predictions", "json"), ("overlay", "png"), ("overlay_layer", "png")):
        assert sorted(p.name for p in (out / sub).iterdir()) == [f"frame_{f:04d}.{ext}" for f in frames]
    summary = json.loads((out / "summary.json").read_text())
    objects = {o["instance"]: o for o in summary["objects"]}
    assert set(objects) == {"Left", "Runner", "Right"}
    assert objects["Runner"]["in_view"] == [1, 2] and objects["Runner"]["found"] == [1]
    assert objects["Left"]["frames_in_view"] == objects["Left"]["frames_found"] == 4
    assert objects["Left"]["mean_iou"] == pytest.approx(1.0) and objects["Left"]["category"] == "class 1"
    assert summary["objects"][0]["instance"] == "Runner"  # least found first
    assert "| Runner | class 1 | 2 | 1 | 1.00 |" in (out / "summary.md").read_text()
    assert state.frames_summary.splitlines()[1] == "Runner: found in 1/2 frames, IoU 1.00 (class 1)"
    assert sorted((r.frame, r.object_name) for r in state.frame_matched) == sorted(
        [(f, n) for f in frames for n in ("Left", "Right")] + [(1, "Runner")])

    # one image per sequence; the camera plays the transparent layer in step with the scene
    image = bpy.data.images[ov.LAYER_SEQUENCE_NAME]
    assert image.source == "SEQUENCE" and bpy.data.images[ov.SEQUENCE_NAME].source == "SEQUENCE"
    slots = [bg for bg in scene.camera.data.background_images if bg.image is not None]
    assert [bg.image.name for bg in slots] == [ov.LAYER_SEQUENCE_NAME]
    user = slots[0].image_user
    assert (user.frame_start, user.frame_duration) == (FRAMES[0], 4)
    for frame in frames:  # Blender's rule: file (frame - frame_start + 1) + frame_offset
        user.frame_current = frame - user.frame_start + 1 + user.frame_offset
        assert Path(image.filepath_from_user(image_user=user)) == out / "overlay_layer" / f"frame_{frame:04d}.png"

    # a saved .blend reopens with the sequence found on disk and transparent outside the instances
    saved = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved), copy=True)
    probe = ("import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
             "cam = bpy.data.scenes[0].camera.data; bg = [b for b in cam.background_images if b.image][0]; "
             "u = bg.image_user; u.frame_current = 2 + u.frame_offset; "
             "print(json.dumps([bg.image.source, u.frame_duration, bg.image.filepath_from_user(image_user=u)]))")
    proc = subprocess.run([sys.executable, "-c", probe, str(saved)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    source, duration, path = json.loads(proc.stdout.strip().splitlines()[-1])
    assert source == "SEQUENCE" and duration == 4 and Path(path) == out / "overlay_layer" / "frame_0002.png"
    alpha = cv2.imread(path, cv2.IMREAD_UNCHANGED)[..., 3]
    assert alpha.min() == 0 and alpha.max() > 0  # the instances drawn, the rest see-through (never black)


def test_bad_ranges_and_no_camera_are_refused_before_anything_is_written(scene, tmp_path: Path) -> None:
    given = tmp_path / "given"
    _ground_truth_predictions(scene, given, leave_out=("", 0))
    state = bpy.context.window_manager.instseg_job
    out = tmp_path / "frames"
    for frames, needle in (("2-9", "outside the scene's frame range 1-4"), ("3-1", "before the first"),
                           ("x", "must be A-B or A")):
        with pytest.raises(RuntimeError, match=needle):
            bpy.ops.instseg.predict_frames(predictions_dir=str(given), output_dir=str(out), frames=frames)
        assert not out.exists()
    scene.instseg.predict_frame_end = 9  # the panel's End past the scene's
    with pytest.raises(RuntimeError, match="outside the scene's frame range"):
        bpy.ops.instseg.predict_frames(predictions_dir=str(given), output_dir=str(out))
    scene.instseg.predict_frame_end = 0
    scene.camera = None
    with pytest.raises(RuntimeError, match="no active camera"):
        bpy.ops.instseg.predict_frames(predictions_dir=str(given), output_dir=str(out))
    assert not out.exists() and "no active camera" in state.last_error


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blender_instseg.blender.ops.predict_cli", *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_cli_bad_frames_are_one_line_exit_2_and_write_nothing(scene, tmp_path: Path) -> None:
    """Checked before the model starts, so any existing file stands in for the checkpoint."""
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    scene.camera = None
    no_camera = tmp_path / "no_camera.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(no_camera), copy=True)
    ckpt = tmp_path / "stand_in.pt"
    ckpt.write_bytes(b"x")
    out = tmp_path / "o"
    common = ["--checkpoint", str(ckpt), "--out", str(out), "--resolution", "32", "--samples", "1"]
    cases = [
        (["--blend", str(blend), "--frames", "0-2"], "--frames 0-2 is outside the scene's frame range 1-4"),
        (["--blend", str(blend), "--frames", "3-2"], "the last frame is before the first"),
        (["--blend", str(no_camera), "--frames", "1-2"], "no active camera"),
        (["--blend", str(blend), "--frames", "1-2", "--predictions", str(ckpt)], "cannot be combined with --frames"),
    ]
    for argv, needle in cases:
        proc = _cli(*common, *argv)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], \
            (argv, proc.stderr)
        assert not out.exists()


# -- the real model -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, torch_python: str) -> Path:
    """A model-only checkpoint (built, not trained): junk predictions, but the real server and files."""
    path = tmp_path_factory.mktemp("frames_model") / "model.pt"
    make = ("import sys, torch; from blender_instseg.ml.checkpoint import save_checkpoint; "
            "from blender_instseg.ml.models import architecture, build_model; "
            "cfg = architecture('solov2')[0](num_classes=1, fpn_channels=32); "
            "save_checkpoint(sys.argv[1], {'model': build_model(cfg.to_dict()).state_dict(), "
            "'model_config': cfg.to_dict(), 'categories': [{'id': 1, 'name': 'cube'}], "
            "'train_config': {'image_size': 64}})")
    proc = subprocess.run([torch_python, "-c", make, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    return path


def test_the_model_runs_once_for_all_frames_and_cancel_keeps_the_frames_done(
        scene, checkpoint: Path, tmp_path: Path, torch_python: str) -> None:
    from blender_instseg.blender.children import SERVERS
    from blender_instseg.blender.ops import jobs

    s = scene.instseg
    s.checkpoint, s.device, s.auto_threshold, s.score_threshold = str(checkpoint), "cpu", False, 0.0
    state = bpy.context.window_manager.instseg_job
    before = _state(scene)
    out = tmp_path / "frames"
    assert bpy.ops.instseg.predict_frames(python=torch_python, output_dir=str(out), frames="1-3") == {"FINISHED"}, \
        state.last_error
    server = SERVERS.current
    assert server is not None and server.alive and server.served == 3  # one process answered every frame
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [f"frame_{f:04d}.json" for f in (1, 2, 3)]
    for f in (1, 2, 3):
        preds = json.loads((out / "predictions" / f"frame_{f:04d}.json").read_text())
        assert isinstance(preds, list) and all(p["segmentation"]["size"] == [RES, RES] for p in preds)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == [1, 2, 3]
    assert {o["instance"]: o["frames_in_view"] for o in summary["objects"]} == {"Left": 3, "Right": 3, "Runner": 2}
    assert _state(scene) == before

    # the timer path, cancelled while frame 1 is in hand: frame 1 is kept, the server stays warm
    jobs.ASYNC_IN_BACKGROUND = True
    try:
        assert bpy.ops.instseg.predict_frames(python=torch_python, output_dir=str(out)) == {"FINISHED"}
        assert state.running
        assert bpy.ops.instseg.cancel_job() == {"FINISHED"}
        deadline = time.monotonic() + 120
        while jobs.tick() is not None:
            assert time.monotonic() < deadline, "timer path did not finish"
            time.sleep(0.02)
    finally:
        jobs.ASYNC_IN_BACKGROUND = False
        if bpy.app.timers.is_registered(jobs.tick):
            bpy.app.timers.unregister(jobs.tick)
    assert state.status == "predict cancelled (kept results)", (state.status, state.last_error)
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["frame_0001.json"]
    assert json.loads((out / "summary.json").read_text())["frames"] == [1]
    assert SERVERS.current is server and server.alive and server.served == 4
    assert _state(scene) == before
    user = next(bg for bg in scene.camera.data.background_images if bg.image is not None).image_user
    assert user.frame_duration == 1


def test_cli_frames_prints_a_progress_event_per_frame_and_the_summary(
        scene, checkpoint: Path, tmp_path: Path, torch_python: str) -> None:
    from blender_instseg.core import protocol

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    out = tmp_path / "cli"
    proc = _cli("--checkpoint", str(checkpoint), "--blend", str(blend), "--frames", "2-4", "--out", str(out),
                "--resolution", str(RES), "--samples", "1", "--device", "cpu", "--python", torch_python,
                env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    events = [protocol.parse_line(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    progress = [e for e in events if e.event == "progress"]
    assert [(e.get("step"), e.get("frame")) for e in progress] == [(1, 2), (2, 3), (3, 4)]
    done = events[-1]
    assert done.event == "done" and done.get("frames") == [2, 3, 4]
    runner = next(o for o in done.get("objects") if o["instance"] == "Runner")
    assert runner["frames_in_view"] == 1
    assert (out / "summary.md").is_file() and len(list((out / "overlay").iterdir())) == 3


def test_the_panel_shows_the_summary_and_the_current_frames_matches(scene, tmp_path: Path) -> None:
    """Prediction section after a run: the Frames toggle, the summary's top lines, this frame's matches."""
    from types import SimpleNamespace

    from blender_instseg.blender.ui import panel

    given = tmp_path / "given"
    _ground_truth_predictions(scene, given, leave_out=("Runner", 2))
    scene.instseg.predict_frames = True
    assert bpy.ops.instseg.predict_frames(predictions_dir=str(given), output_dir=str(tmp_path / "f")) == {"FINISHED"}
    labels: list[str] = []
    operators: list[str] = []

    class Layout:
        def __getattr__(self, name: str):  # row(), column(), box(), prop(), ... record what shows
            def call(*args, **kw):
                if name == "label":
                    labels.append(kw.get("text", ""))
                elif name == "operator":
                    operators.append(args[0])
                return self
            return call

    scene.frame_set(2)
    panel.INSTSEG_PT_prediction.draw(SimpleNamespace(layout=Layout()), bpy.context)
    assert "instseg.predict_frames" in operators and "instseg.predict_view" not in operators
    assert labels[labels.index("Frame 2: matched (2)") + 1:][:2] == [
        "Left: class 1 0.90 (IoU 1.00)", "Right: class 1 0.90 (IoU 1.00)"]
    assert "Runner: found in 1/2 frames, IoU 1.00 (class 1)" in labels
    assert any(line.startswith("4 frames (1-4): 9 of 10 object-frames found") for line in labels)
