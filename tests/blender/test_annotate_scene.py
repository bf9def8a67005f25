"""annotate-scene (scripts/annotate_scene.py, blender/annotate_scene.py) on a keyframed scene the tests build.

A 24-frame animation (tests/blender/annotate_scene_fixture.py): a cube, a ball that leaves the
picture and comes back, and a collection instance of a two-part chair. Checked: one id (= track_id)
per object over all frames, the id maps equal to an independent ray cast of the evaluated scene at
every frame, the VIS JSON against the COCO file, the .blend's bytes unchanged, a resume after
kill -9 giving the same files, one-line refusals that write nothing, and the operator.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

from blender_instseg.core.formats import dataset, vis  # noqa: E402
from blender_instseg.core.validation.validate import validate_dataset  # noqa: E402
from tests.blender.annotate_scene_fixture import FRAMES, H, ORTHO, W, build_animation  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "annotate_scene.py"
# sorted (object name, instance index): Ball, Cube, chair_0's one instance
EXPECTED_IDS = {"Ball": 1, "Cube": 2, "chair_0/0": 3}
CATEGORIES = ["box", "ball", "chair"]  # the InstSeg child collections, in order


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _annotate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--device", "cpu", "--threads", "1"],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a dataset by relative path (atomic-write temp names left by a kill are not files of it)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = build_animation(tmp_path_factory.mktemp("scene") / "anim.blend")
    return path, _sha(path)


@pytest.fixture(scope="module")
def annotated(scene_file: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("annotated") / "ds"
    proc = _annotate("--blend", str(scene_file[0]), "--out", str(out), "--masks-only", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    return out


def _records(out: Path) -> list[dict]:
    return [dataset.read_record(dataset.record_path(out, i)) for i in range(FRAMES)]


def test_every_object_keeps_one_id_and_track_over_all_frames(annotated: Path) -> None:
    conf = dataset.read_dataset_config(annotated)
    assert [c["name"] for c in conf["categories"]] == CATEGORIES
    assert {i["name"]: (i["instance_id"], i["track_id"]) for i in conf["identities"]} == \
        {name: (k, k) for name, k in EXPECTED_IDS.items()}
    ball_seen = []
    for i, record in enumerate(_records(annotated)):
        assert record["frame_index"] == i + 1 and record["video_id"] == 1
        for entry in record["annotations"] + record["hidden"]:
            assert entry["instance_id"] == entry["track_id"] == EXPECTED_IDS[entry["object_name"]]
        names = {a["object_name"] for a in record["annotations"]}
        assert {"Cube", "chair_0/0"} <= names  # always in the picture
        ball_seen.append("Ball" in names)
        if "Ball" not in names:
            assert [h["reason"] for h in record["hidden"] if h["object_name"] == "Ball"] == ["outside_frame"]
    # the ball leaves the picture and comes back, with the same id
    assert ball_seen[0] and ball_seen[-1] and not all(ball_seen)
    coco = dataset.load_coco(annotated / "annotations.json")
    assert all(im["video_id"] == 1 and im["frame_index"] == im["index"] + 1 for im in coco["images"])
    assert all(a["track_id"] == a["instance_id"] for a in coco["annotations"])
    cats = {c["name"]: c["id"] for c in coco["categories"]}
    ball = [a for a in coco["annotations"] if a["track_id"] == 1]
    assert ball and all(a["category_id"] == cats["ball"] for a in ball)  # from the custom property


def _ray_cast_ids(scene: bpy.types.Scene) -> np.ndarray:
    """(H, W) id of what the ray through each pixel centre hits in the evaluated scene (0: background)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    owner = {"Ball": EXPECTED_IDS["Ball"], "Cube": EXPECTED_IDS["Cube"], "seat": EXPECTED_IDS["chair_0/0"],
             "back": EXPECTED_IDS["chair_0/0"], "Ground": 0}
    ids = np.zeros((H, W), np.uint16)
    pitch = ORTHO / W
    for py in range(H):
        for px in range(W):
            origin = Vector((-ORTHO / 2 + (px + 0.5) * pitch, H * pitch / 2 - (py + 0.5) * pitch, 5.0))
            hit, _, _, _, obj, _ = scene.ray_cast(depsgraph, origin, Vector((0.0, 0.0, -1.0)))
            if hit:
                ids[py, px] = owner[obj.name]
    return ids


def test_masks_equal_a_ray_cast_of_the_evaluated_scene_at_every_frame(annotated: Path,
                                                                     scene_file: tuple[Path, str]) -> None:
    from blender_instseg.blender.render import output

    bpy.ops.wm.open_mainfile(filepath=str(scene_file[0]), load_ui=False)
    scene = bpy.context.scene
    occluded = 0
    for i, record in enumerate(_records(annotated)):
        scene.frame_set(i + 1)
        truth = _ray_cast_ids(scene)
        ids = output.read_id_map(annotated / record["mask_file"])
        assert np.array_equal(ids, truth), (i, int((ids != truth).sum()))
        occluded += any(a["visible_fraction"] < 1 for a in record["annotations"])
    assert occluded  # the chair passes over the cube: some frames test occlusion
    assert validate_dataset(annotated).ok


def test_vis_json_loads_and_matches_the_coco_file(annotated: Path) -> None:
    from pycocotools import mask as mask_utils

    data = json.loads((annotated / vis.VIS_FILE).read_text())
    coco = dataset.load_coco(annotated / "annotations.json")
    (video,) = data["videos"]
    assert video["length"] == FRAMES and video["file_names"] == [im["file_name"] for im in coco["images"]]
    by_key = {(a["image_id"], a["track_id"]): a for a in coco["annotations"]}
    assert sorted(t["track_id"] for t in data["annotations"]) == [1, 2, 3]
    for track in data["annotations"]:
        for t, seg in enumerate(track["segmentations"]):
            ann = by_key.get((t + 1, track["track_id"]))
            assert (seg is None) == (ann is None)
            if seg is not None:
                assert int(mask_utils.area(seg)) == ann["area"] == track["areas"][t]
    ball = next(t for t in data["annotations"] if t["track_id"] == 1)
    assert None in ball["segmentations"] and ball["segmentations"][0] is not None
    # a changed VIS file is caught by validate
    ball["segmentations"][0] = None
    broken = annotated / "vis.json"
    original = broken.read_bytes()
    try:
        broken.write_text(json.dumps(data))
        report = validate_dataset(annotated)
        assert not report.ok and any("vis.json" in e and "track 1" in e for e in report.errors)
    finally:
        broken.write_bytes(original)


def test_the_blend_file_is_never_modified(annotated: Path, scene_file: tuple[Path, str]) -> None:
    path, sha = scene_file
    assert _sha(path) == sha
    assert sorted(p.name for p in path.parent.iterdir()) == ["anim.blend"]  # no .blend1, no copies


def test_rgb_mode_gives_the_same_labels_and_the_exports(annotated: Path, scene_file: tuple[Path, str],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "rgb"
    proc = _annotate("--blend", str(scene_file[0]), "--out", str(out), "--frames", "10-12", "--samples", "2",
                     "--export", "yolo", "panoptic", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    for k, record in enumerate(dataset.read_record(dataset.record_path(out, i)) for i in range(3)):
        assert record["frame_index"] == 10 + k
        same = dataset.read_record(dataset.record_path(annotated, 9 + k))
        assert (out / record["mask_file"]).read_bytes() == (annotated / same["mask_file"]).read_bytes()
        assert record["annotations"] == same["annotations"]
    from blender_instseg.blender.render import output

    rgb = output.read_rgb(out / "images" / "000000.png")
    assert rgb is not None and rgb.mean() > 20  # lit by the scene's sun, not the 1-sample label render
    assert (out / "labels").is_dir() and (out / "panoptic.json").is_file() and (out / "depth" / "000000.exr").is_file()
    assert validate_dataset(out).ok
    assert _sha(scene_file[0]) == scene_file[1]


def test_resume_after_kill_gives_identical_files(annotated: Path, scene_file: tuple[Path, str],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "ds"
    argv = [sys.executable, str(SCRIPT), "--blend", str(scene_file[0]), "--out", str(out), "--masks-only",
            "--progress", "jsonl", "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "progress" and event.get("step", 0) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    finished = len(list((out / "records").glob("*.json")))
    assert 3 <= finished < FRAMES and not (out / "annotations.json").exists()
    rerun = _annotate("--blend", str(scene_file[0]), "--out", str(out), "--masks-only", "--progress", "none")
    assert rerun.returncode == 0, rerun.stderr
    assert _files(out) == _files(annotated)


@pytest.mark.parametrize("case", ["no_camera", "frames_outside", "not_a_blend", "unknown_category"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case: str, tmp_path: Path,
                                                         scene_file: tuple[Path, str]) -> None:
    blend, extra = scene_file[0], []
    if case == "no_camera":
        blend = build_animation(tmp_path / "nocam.blend", camera=False)
    elif case == "frames_outside":
        extra = ["--frames", "1-48"]
    elif case == "not_a_blend":
        blend = tmp_path / "fake.blend"
        blend.write_bytes(b"this is not a blend file\n" * 10)
    else:
        blend = build_animation(tmp_path / "odd.blend", extra_category="bike")
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    proc = _annotate("--blend", str(blend), "--out", str(out), "--masks-only", *extra)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    expected = {"no_camera": "no active camera", "frames_outside": "outside the scene's frame range 1-24",
                "not_a_blend": "cannot open", "unknown_category": "'bike' is not a category"}[case]
    assert expected in errors[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture()
def shot(tmp_path: Path) -> Iterator[Path]:
    """The animation saved and open, with the add-on enabled afterwards (building resets the preferences)."""
    import addon_utils

    saved = build_animation(tmp_path / "shot.blend")
    assert addon_utils.enable("blender_instseg", default_set=True) is not None
    bpy.ops.wm.save_mainfile()  # registering the add-on's settings can count as an unsaved change
    yield saved
    addon_utils.disable("blender_instseg", default_set=True)


def test_the_operator_runs_annotate_scene_as_a_child(shot: Path, tmp_path: Path) -> None:
    from blender_instseg.blender.ops import annotate as op_annotate
    from blender_instseg.blender.ops import dataset as op_dataset

    saved = shot
    sha = _sha(saved)
    context = bpy.context
    args = op_annotate.annotate_args(context, tmp_path / "x", frame_start=2, frame_end=3, masks_only=True)
    # bpy 5.0's module keeps is_dirty set even after a save: the copy is then read, which is also safe
    read = op_dataset.scene_copy_path() if bpy.data.is_dirty else saved
    assert args[:2] == ["--blend", str(read)] and args[args.index("--frames") + 1] == "2-3"
    out = tmp_path / "op"
    result = bpy.ops.instseg.annotate_scene(out=str(out), frame_start=4, frame_end=6, masks_only=True)
    assert result == {"FINISHED"}, context.window_manager.instseg_job.last_error
    assert sorted(r["frame_index"] for r in map(dataset.read_record, (out / "records").glob("*.json"))) == [4, 5, 6]
    assert context.window_manager.instseg_job.summary.startswith("annotated: 3 frame(s)")
    assert (out / "vis.json").is_file() and _sha(saved) == sha
    # an unsaved change: the child reads a saved copy, the artist's file stays as it was
    bpy.data.objects["Cube"].location.x += 1.0
    bpy.ops.ed.undo_push(message="move the cube")
    assert bpy.data.is_dirty and op_annotate.needs_copy()
    copy = op_dataset.scene_copy_path()
    assert op_annotate.annotate_args(context, out)[1] == str(copy)
    out2 = tmp_path / "op2"
    result = bpy.ops.instseg.annotate_scene(out=str(out2), frame_start=1, frame_end=1, masks_only=True)
    assert result == {"FINISHED"}, context.window_manager.instseg_job.last_error
    conf = dataset.read_dataset_config(out2)
    assert conf["annotate"]["source_sha256"] == _sha(copy) != sha
    assert _sha(saved) == sha and bpy.data.filepath == str(saved) and bpy.data.is_dirty


def test_geometry_nodes_and_particle_instances_each_get_their_own_id(tmp_path: Path) -> None:
    from tests.blender.test_instances import _cube, _empty_scene, _gn_scatter

    scene = _empty_scene()
    scene.frame_start, scene.frame_end = 1, 2
    rock = _cube("Rock", 0.3)
    rock.hide_render = rock.hide_viewport = True
    scatter = _gn_scatter(rock)  # 10 rocks on a 5 x 2 grid
    scatter["instseg_category"] = "rock"
    emitter = _cube("Emitter", 0.5, (0.0, -1.2, 0.0))
    emitter["instseg_category"] = "pebble"
    emitter.modifiers.new("p", "PARTICLE_SYSTEM")
    settings = emitter.particle_systems[0].settings
    settings.type, settings.count, settings.hair_length = "HAIR", 3, 0.2
    settings.render_type, settings.instance_object = "OBJECT", _cube("Pebble", 0.1, (5.0, 5.0, 0.0))
    bpy.data.objects["Pebble"].hide_render = True
    path = tmp_path / "scatter.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    out = tmp_path / "ds"
    proc = _annotate("--blend", str(path), "--out", str(out), "--masks-only", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    conf = dataset.read_dataset_config(out)
    names = [i["name"] for i in conf["identities"]]
    assert names == ["Emitter", *[f"Emitter/{k}" for k in range(3)], *[f"Scatter/{k}" for k in range(10)]]
    assert [c["name"] for c in conf["categories"]] == ["pebble", "rock"]
    from blender_instseg.blender.render import output

    for index in range(2):
        record = dataset.read_record(dataset.record_path(out, index))
        ids = output.read_id_map(out / record["mask_file"])
        rocks = {a["instance_id"] for a in record["annotations"] if a["object_name"].startswith("Scatter/")}
        assert len(rocks) == 10 and rocks <= set(np.unique(ids).tolist())  # ten rocks, ten masks
        listed = {e["object_name"] for e in record["annotations"] + record["hidden"]}
        assert listed == set(names)  # every particle too, seen or hidden
    assert validate_dataset(out).ok
