"""Predict View with real bpy/Cycles: ground-truth masks as "predictions" make the answer exact."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

RES = 64


@pytest.fixture()
def scene(addon, tmp_path: Path):
    """Three cubes in a row seen from above, a hidden fourth one behind the camera, plus a light."""
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    sc = bpy.context.scene
    mesh = bpy.data.meshes.new("cube_mesh")
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bm.to_mesh(mesh)
    bm.free()
    for name, x in (("Left", -2.0), ("Middle", 0.0), ("Right", 2.0), ("Behind", 0.0)):
        ob = bpy.data.objects.new(name, mesh)  # shared mesh: ids must still differ
        ob.location = (x, 0.0, 0.0) if name != "Behind" else (0.0, 0.0, 20.0)
        sc.collection.objects.link(ob)
    cam_data = bpy.data.cameras.new("cam")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 7.0
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0.0, 0.0, 10.0)
    sc.collection.objects.link(cam)
    sc.camera = cam
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("sun", "SUN"))
    sc.collection.objects.link(light)
    sc.render.resolution_x = sc.render.resolution_y = RES
    sc.render.resolution_percentage = 100
    s = sc.instseg
    s.predict_samples = 1
    s.score_threshold = 0.3
    s.match_iou_threshold = 0.5
    s.run_dir = str(tmp_path / "run")
    s.dataset_dir = str(tmp_path / "dataset")
    s.checkpoint = ""
    prefs = bpy.context.preferences.addons["blender_instseg"].preferences
    prefs.output_dir = str(tmp_path / "out")
    bpy.ops.instseg.clear_overlay()
    if bpy.context.window_manager.instseg_job.has_saved_selection:
        bpy.ops.instseg.restore_selection()
    return sc


def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def test_render_view_gives_one_id_per_visible_object_and_restores_indices(scene) -> None:
    from blender_instseg.blender.ops.view_render import render_view

    for ob in scene.objects:
        ob.pass_index = 42
    engine = scene.render.engine
    view = render_view(bpy.context, samples=1)
    assert view.rgb.shape == (RES, RES, 3) and view.rgb.dtype == np.uint8
    assert view.id_map.shape == (RES, RES)
    seen = {view.index_to_object[int(i)] for i in np.unique(view.id_map) if i}
    assert seen == {"Left", "Middle", "Right"}  # "Behind" is behind the camera
    assert all(ob.pass_index == 42 for ob in scene.objects)
    assert scene.render.engine == engine
    # left-to-right order in the image matches the scene
    cols = {view.index_to_object[int(i)]: np.nonzero(view.id_map == i)[1].mean() for i in np.unique(view.id_map) if i}
    assert cols["Left"] < cols["Middle"] < cols["Right"]


def test_the_artists_pass_indices_do_not_hide_objects_and_are_kept(scene) -> None:
    """An artist's own pass indices (for compositing) change nothing: every visible object is a
    candidate, and the indices are the same after the click."""
    from blender_instseg.blender.ops.view_render import render_view

    for ob in scene.objects:
        ob.pass_index = 0
    scene.objects["Left"].pass_index = 5
    scene.objects["Right"].pass_index = 9
    view = render_view(bpy.context, samples=1)
    seen = {view.index_to_object[int(i)] for i in np.unique(view.id_map) if i}
    assert seen == {"Left", "Middle", "Right"}
    assert [scene.objects[n].pass_index for n in ("Left", "Middle", "Right")] == [5, 0, 9]


def test_in_a_generator_scene_only_its_instances_are_candidates(scene) -> None:
    from blender_instseg.blender.ops.view_render import render_view

    for name in ("Left", "Right"):
        scene.objects[name]["instseg_instance_id"] = 1
    try:
        view = render_view(bpy.context, samples=1)
    finally:
        for name in ("Left", "Right"):
            del scene.objects[name]["instseg_instance_id"]
    seen = {view.index_to_object[int(i)] for i in np.unique(view.id_map) if i}
    assert seen == {"Left", "Right"}  # "Middle" is background, like a generator's ground


def test_instances_get_their_own_ids_and_select_their_instancer(scene) -> None:
    """Collection instances: each one is matched on its own pixels and its pixels name the empty
    that makes it; the stand-ins are gone afterwards."""
    from blender_instseg.blender.ops.view_render import render_view

    part = scene.objects["Middle"]
    coll = bpy.data.collections.new("Part")
    coll.objects.link(bpy.data.objects.new("part", part.data))
    names_before = sorted(o.name for o in bpy.data.objects)
    empties = []
    for i, x in enumerate((-2.0, 2.0)):
        empty = bpy.data.objects.new(f"copy_{i}", None)
        empty.instance_type, empty.instance_collection = "COLLECTION", coll
        empty.location = (x, -1.5, 0.0)
        scene.collection.objects.link(empty)
        empties.append(empty.name)
    try:
        view = render_view(bpy.context, samples=1)
        ids_of = {}
        for i in np.unique(view.id_map):
            if i:
                ids_of.setdefault(view.index_to_object[int(i)], []).append(int(i))
        assert len(ids_of.get("copy_0", [])) == 1 and len(ids_of.get("copy_1", [])) == 1
        assert ids_of["copy_0"] != ids_of["copy_1"]
        assert sorted(o.name for o in bpy.data.objects) == sorted(names_before + empties)
    finally:
        for name in empties:
            bpy.data.objects.remove(bpy.data.objects[name])
        bpy.data.objects.remove(bpy.data.objects["part"])
        bpy.data.collections.remove(coll)


def _write_categories(scene) -> None:
    run = Path(scene.instseg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"categories": [{"id": 1, "name": "cube"}, {"id": 2, "name": "box"}]}))


def test_ground_truth_predictions_select_exactly_the_matched_objects(scene, tmp_path: Path) -> None:
    import cv2

    from blender_instseg.blender.ops.view_render import render_view
    from blender_instseg.blender.ui import overlay

    view = render_view(bpy.context, samples=1)
    ids = {name: idx for idx, name in view.index_to_object.items()}
    left, middle, right = (view.id_map == ids[n] for n in ("Left", "Middle", "Right"))
    blob = np.zeros_like(left)
    blob[:6, :6] = True
    assert not (blob & (view.id_map > 0)).any()
    preds = [
        {"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": _rle(left)},
        {"image_id": 1, "category_id": 2, "score": 0.8, "segmentation": _rle(right)},
        {"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": _rle(left)},  # duplicate
        {"image_id": 1, "category_id": 2, "score": 0.7, "segmentation": _rle(blob)},  # nothing there
        {"image_id": 1, "category_id": 1, "score": 0.1, "segmentation": _rle(middle)},  # below threshold
    ]
    pred_path = tmp_path / "preds.json"
    pred_path.write_text(json.dumps(preds))
    _write_categories(scene)
    for ob in scene.objects:
        ob.select_set(ob.name == "Middle")
    bpy.context.view_layer.objects.active = scene.objects["Middle"]

    assert bpy.ops.instseg.predict_view(predictions_path=str(pred_path)) == {"FINISHED"}

    state = bpy.context.window_manager.instseg_job
    assert state.last_error == ""
    assert {ob.name for ob in scene.objects if ob.select_get()} == {"Left", "Right"}
    assert bpy.context.view_layer.objects.active.name == "Left"
    assert scene.objects["Left"]["instseg_class"] == "cube"
    assert scene.objects["Left"]["instseg_score"] == pytest.approx(0.9)
    assert scene.objects["Left"]["instseg_iou"] == pytest.approx(1.0)
    assert scene.objects["Right"]["instseg_class"] == "box"
    assert "instseg_class" not in scene.objects["Middle"]
    assert sorted((r.object_name, r.category) for r in state.matched) == [("Left", "cube"), ("Right", "box")]
    assert sorted((r.index, round(r.score, 2)) for r in state.unmatched) == [(2, 0.5), (3, 0.7)]
    assert [r.object_name for r in state.missed] == ["Middle"]
    # overlay image in Blender, on the camera, and as a PNG
    image = bpy.data.images[overlay.COMPOSITE_NAME]
    assert tuple(image.size) == (RES, RES) and state.overlay_image == image.name
    px = np.empty(RES * RES * 4, np.float32)
    image.pixels.foreach_get(px)
    px = np.flipud(px.reshape(RES, RES, 4))
    assert np.abs(px[..., :3] * 255 - view.rgb).max() > 20  # instances are tinted
    layer_names = [bg.image.name for bg in scene.camera.data.background_images]
    assert layer_names == [overlay.LAYER_NAME] and scene.camera.data.show_background_images
    png = cv2.imread(state.overlay_path, cv2.IMREAD_UNCHANGED)
    assert png is not None and png.shape == (RES, RES, 3)
    assert Path(state.overlay_path).parent == Path(bpy.context.preferences.addons["blender_instseg"].preferences.output_dir) / "predict"

    # a second prediction keeps the original selection for Restore
    assert bpy.ops.instseg.predict_view(predictions_path=str(pred_path)) == {"FINISHED"}
    assert bpy.ops.instseg.restore_selection() == {"FINISHED"}
    assert {ob.name for ob in scene.objects if ob.select_get()} == {"Middle"}
    assert bpy.context.view_layer.objects.active.name == "Middle"

    assert bpy.ops.instseg.clear_overlay() == {"FINISHED"}
    assert overlay.COMPOSITE_NAME not in bpy.data.images and overlay.LAYER_NAME not in bpy.data.images
    assert len(scene.camera.data.background_images) == 0
    assert all("instseg_class" not in ob for ob in scene.objects)
    assert len(state.matched) == 0


def test_predictions_of_the_wrong_size_report_an_error(scene, tmp_path: Path) -> None:
    small = np.zeros((RES // 2, RES // 2), bool)
    small[2:5, 2:5] = True
    pred_path = tmp_path / "preds.json"
    pred_path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": _rle(small)}]))
    with pytest.raises(RuntimeError, match="differs from the rendered view"):
        bpy.ops.instseg.predict_view(predictions_path=str(pred_path))
    assert "differs from the rendered view" in bpy.context.window_manager.instseg_job.last_error
    pred_path.write_text("{not json")
    with pytest.raises(RuntimeError, match="not valid JSON"):
        bpy.ops.instseg.predict_view(predictions_path=str(pred_path))
    full = np.zeros((RES, RES), bool)
    full[2:5, 2:5] = True
    for bad in (float("nan"), 5.0, "high"):  # NaN would slip past every threshold comparison
        pred_path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": bad, "segmentation": _rle(full)}]))
        with pytest.raises(RuntimeError, match="scores must be numbers in"):
            bpy.ops.instseg.predict_view(predictions_path=str(pred_path))


def test_no_camera_reports_an_error(scene, tmp_path: Path) -> None:
    _touch_checkpoint(scene)
    scene.camera = None
    with pytest.raises(RuntimeError, match="no active camera"):
        bpy.ops.instseg.predict_view(python=sys.executable)
    assert "no active camera" in bpy.context.window_manager.instseg_job.last_error


def _touch_checkpoint(scene) -> bool:
    run = Path(scene.instseg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "last.pt").write_bytes(b"not a real checkpoint")
    return True


def _python_without_torch(tmp_path: Path) -> str:
    fake = tmp_path / "no_torch"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    wrapper = tmp_path / "python-without-torch"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH=\"{fake}:$PYTHONPATH\" exec \"{sys.executable}\" \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


def test_missing_torch_reports_the_error_in_the_panel(scene, tmp_path: Path) -> None:
    _touch_checkpoint(scene)
    python = _python_without_torch(tmp_path)
    with pytest.raises(RuntimeError, match="torch"):
        bpy.ops.instseg.predict_view(python=python)
    state = bpy.context.window_manager.instseg_job
    assert "torch" in state.last_error and not state.running
    assert state.status == "predict failed"


FAKE_PREDICTOR = """
import json, shutil, sys
args = sys.argv[1:]
out = args[args.index("--out") + 1]
assert args[:4] == ["-u", "-m", "blender_instseg.ml", "predict"], args
assert args[args.index("--images") + 1].endswith("view.png")
shutil.copyfile(sys.argv[0].replace("predictor.py", "answer.json"), out)
print(json.dumps({"event": "progress", "step": 1, "total": 1}), flush=True)
print(json.dumps({"event": "done", "out": out}), flush=True)
"""


def test_ui_path_predicts_through_a_child_and_a_timer(scene, tmp_path: Path) -> None:
    """The path a click takes: render, child process, timer ticks, then overlay and selection."""
    import time

    from blender_instseg.blender.ops import jobs
    from blender_instseg.blender.ops.view_render import render_view

    view = render_view(bpy.context, samples=1)
    ids = {name: idx for idx, name in view.index_to_object.items()}
    answer = [{"image_id": 1, "category_id": 2, "score": 0.75, "segmentation": _rle(view.id_map == ids["Right"])}]
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    (tmp_path / "predictor.py").write_text(FAKE_PREDICTOR)
    wrapper = tmp_path / "python-predictor"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "predictor.py"}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    _touch_checkpoint(scene)
    _write_categories(scene)
    jobs.ASYNC_IN_BACKGROUND = True
    try:
        assert bpy.ops.instseg.predict_view(python=str(wrapper)) == {"FINISHED"}
        state = bpy.context.window_manager.instseg_job
        assert state.running and jobs.is_running() and bpy.app.timers.is_registered(jobs.tick)
        deadline = time.monotonic() + 30
        while jobs.tick() is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        jobs.ASYNC_IN_BACKGROUND = False
        if bpy.app.timers.is_registered(jobs.tick):
            bpy.app.timers.unregister(jobs.tick)
    assert not state.running and state.last_error == "", state.last_error
    assert state.status == "predict finished"
    assert {ob.name for ob in scene.objects if ob.select_get()} == {"Right"}
    assert scene.objects["Right"]["instseg_class"] == "box"
    assert sorted(r.object_name for r in state.missed) == ["Left", "Middle"]
    assert (Path(state.overlay_path).parent / "view.png").is_file()
