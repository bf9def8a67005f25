"""The operators as an artist runs them: from the installed extension zip (bl_ext.user_default.*).

Builds the zip with the project's build script, installs it into real bpy in a child process (one
bpy per process; an enabled add-on must not leak into other tests), and calls the operators in
background mode: Predict View with ground-truth masks as predictions, Generate (whose child must
import the *installed* package, since scripts/ is not in the zip), Evaluate on that dataset, and
Train with a Python that has no torch. Results come back as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import importlib, json, os, stat, sys
from pathlib import Path
import bpy
import addon_utils
import numpy as np
from pycocotools import mask as mask_utils

zip_path, work, TESTS_PARENT = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
MOD = "bl_ext.user_default.blender_instseg"
out = {"install": sorted(bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True))}
procs_argv = importlib.import_module(MOD + ".procs.argv")
out["package_name"] = procs_argv.package_name()
out["package_dir"] = str(procs_argv.package_dir())

# a known scene: two cubes side by side under an orthographic camera
for ob in list(bpy.data.objects):
    bpy.data.objects.remove(ob)
sc = bpy.context.scene
bpy.ops.mesh.primitive_cube_add(location=(-1.5, 0, 0))
bpy.context.object.name = "A"
bpy.ops.mesh.primitive_cube_add(location=(1.5, 0, 0))
bpy.context.object.name = "B"
cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", 6.0, (0, 0, 10)
sc.collection.objects.link(cam)
sc.camera = cam
sc.render.resolution_x = sc.render.resolution_y = 48
sc.render.resolution_percentage = 100
prefs = bpy.context.preferences.addons[MOD].preferences
prefs.output_dir = str(work / "out")
s = sc.instseg
s.predict_samples = 1

vr = importlib.import_module(MOD + ".blender.ops.view_render")
view = vr.render_view(bpy.context, samples=1)
preds = []
for idx, name in view.index_to_object.items():
    if name == "A":
        r = mask_utils.encode(np.asfortranarray((view.id_map == idx).astype(np.uint8)))
        preds.append({"image_id": 1, "category_id": 1, "score": 0.8,
                      "segmentation": {"size": list(r["size"]), "counts": r["counts"].decode()}})
(work / "preds.json").write_text(json.dumps(preds))
out["predict"] = sorted(bpy.ops.instseg.predict_view(predictions_path=str(work / "preds.json")))
out["selected"] = sorted(ob.name for ob in sc.objects if ob.select_get())
state = bpy.context.window_manager.instseg_job
out["missed"] = [r.object_name for r in state.missed]
img = bpy.data.images.get("InstSeg Overlay")
out["overlay_size"] = list(img.size) if img else None
out["overlay_png"] = os.path.isfile(state.overlay_path)

s.dataset_dir = str(work / "gen")
s.num_images, s.resolution, s.min_objects, s.max_objects, s.masks_only, s.seed = 2, 32, 1, 3, True, 5
try:
    out["generate"] = sorted(bpy.ops.instseg.generate_dataset())
    out["images"] = len(json.loads((work / "gen" / "annotations.json").read_text())["images"])
except RuntimeError as exc:
    out["generate"] = str(exc)
    out["images"] = 0

sys.path.insert(0, TESTS_PARENT)
from tests.shapes import make_shapes_dataset
gt_file = make_shapes_dataset(work / "shapes", n_images=3, size=48, seed=1)
coco = json.loads(gt_file.read_text())
gt_preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
             "segmentation": a["segmentation"]} for a in coco["annotations"]]
(work / "gt_preds.json").write_text(json.dumps(gt_preds))
s.dataset_dir = str(gt_file.parent)
s.predictions_path = str(work / "gt_preds.json")
s.run_dir = str(work / "run")
out["evaluate"] = sorted(bpy.ops.instseg.evaluate(python=sys.executable))
out["mask_ap"], out["boundary_ap"] = state.mask_ap, state.boundary_ap

fake = work / "no_torch"
fake.mkdir()
(fake / "torch.py").write_text("raise ImportError('No module named torch')\n")
wrapper = work / "python-no-torch"
wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{fake}:$PYTHONPATH" exec "{sys.executable}" "$@"\n')
wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
try:
    bpy.ops.instseg.train(python=str(wrapper))
    out["train"] = "no error"
except RuntimeError as exc:
    out["train"] = str(exc)
out["train_error"] = state.last_error
addon_utils.disable(MOD, default_set=True)
out["scene_prop_after_disable"] = hasattr(bpy.types.Scene, "instseg")
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_extension as bx
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    import bpy

    tmp = tmp_path_factory.mktemp("ext-ops")
    zips = bx.build(bx.Layout(stage_dir=tmp / "stage", out_dir=tmp / "dist"))
    target = bx.target_for_blender(bpy.app.version)
    assert target is not None, f"bpy {bpy.app.version_string} is outside every build target"
    return zips[bx.TARGETS.index(target)]  # the zip for the Blender running the tests


@pytest.fixture(scope="module")
def installed(built_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("installed-ops")
    script = tmp / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp / "blender-user"))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(script), str(built_zip), str(tmp), str(ROOT)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):]), tmp


def test_operators_of_the_installed_extension(installed: tuple[dict, Path]) -> None:
    r, tmp = installed
    assert r["install"] == ["FINISHED"]
    assert r["package_name"] == "bl_ext.user_default.blender_instseg"
    assert r["package_dir"].startswith(str(tmp / "blender-user"))
    assert r["predict"] == ["FINISHED"] and r["selected"] == ["A"] and r["missed"] == ["B"]
    assert r["overlay_size"] == [48, 48] and r["overlay_png"]
    assert r["evaluate"] == ["FINISHED"] and r["mask_ap"] == pytest.approx(1.0)
    assert r["boundary_ap"] == pytest.approx(1.0)
    assert "torch" in r["train"] and "torch" in r["train_error"]
    assert r["scene_prop_after_disable"] is False


def test_generate_from_the_installed_extension(installed: tuple[dict, Path]) -> None:
    r, _ = installed
    assert r["generate"] == ["FINISHED"] and r["images"] == 2, r["generate"]
