"""Sequences in the generator (``--frames N``, ``sequence.*``): each scene rendered as N frames of a video.

Checked with the real bpy on tiny masks-only renders (2 scenes x 4 frames): one id (= track_id) per
object over its scene's frames, video_id / frame_index / seeds as docs/generator.md says, the id
maps equal to an independent ray cast of the scene posed at every frame (objects and camera
moving, and the physics drop), vis.json valid and equal to the COCO file's view, --workers 2 and a
kill -9 + resume (also from the middle of a scene) byte-identical to one process, one-line
refusals, and --frames 1 byte-identical to a run of the code from before sequences existed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

from blender_instseg.blender import render_image  # noqa: E402
from blender_instseg.blender.generate import main as generate  # noqa: E402
from blender_instseg.blender.render import output  # noqa: E402
from blender_instseg.blender.scene import builder, motion  # noqa: E402
from blender_instseg.core import plan  # noqa: E402
from blender_instseg.core.formats import dataset, vis  # noqa: E402
from blender_instseg.core.genconfig import GeneratorConfig  # noqa: E402
from blender_instseg.core.validation.validate import validate_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "generate.py"
W, H, FRAMES, SCENES, SEED = 64, 48, 4, 2, 3
# fast motion at a low frame rate, so 4 frames show large moves: objects leave the picture
MOTION = {"fps": 2.0, "object_speed": [1.0, 2.0], "object_spin": [60.0, 120.0], "camera_orbit": [20.0, 40.0],
          "camera_dolly": [-1.0, 1.0]}
COMMON = ["--resolution", f"{W}x{H}", "--masks-only", "--min-objects", "3", "--max-objects", "5", "--no-depth",
          "--device", "cpu", "--threads", "1", "--no-preview"]


def tree(root: Path) -> dict[str, bytes]:
    """Every file of a dataset (not the lock file, not an atomic writer's temp names)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module", autouse=True)
def fresh_blender():
    builder.reset_blender()
    yield


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "sequence.json"
    # every object with a visible pixel is annotated, so the id map holds exactly what the ray hits
    path.write_text(json.dumps({"sequence": MOTION, "objects": {"min_visible_pixels": 1,
                                                                "min_visible_fraction": 0.0}}))
    return path


def _args(config_file: Path, *extra: str) -> list[str]:
    return ["--num-images", str(SCENES * FRAMES), "--frames", str(FRAMES), "--seed", str(SEED),
            "--config", str(config_file), "--val-fraction", "0.5", "--progress", "none", *COMMON, *extra]


@pytest.fixture(scope="module")
def videos(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "ds"
    assert generate(["--out", str(out), *_args(config_file)]) == 0
    return out


def _records(out: Path) -> list[dict]:
    return [dataset.read_record(dataset.record_path(out, i)) for i in range(SCENES * FRAMES)]


def test_ids_and_track_ids_hold_over_each_scene(videos: Path) -> None:
    records = _records(videos)
    moved, left_and_back = 0, 0
    for s in range(SCENES):
        frames = records[s * FRAMES:(s + 1) * FRAMES]
        names = None
        for f, record in enumerate(frames):
            index = s * FRAMES + f
            assert (record["video_id"], record["frame_index"]) == (s + 1, f)
            assert record["seed"] == plan.image_seed(SEED, index)  # the frame's own seed (validate checks it)
            assert record["scene_seed"] == plan.scene_seed(SEED, s, FRAMES) == plan.image_seed(SEED, s * FRAMES)
            assert record["split"] == frames[0]["split"]  # a video is never split between train and val
            entries = record["annotations"] + record["hidden"]
            assert all(e["track_id"] == e["instance_id"] for e in entries)
            # every object of the scene is in every frame, annotated or hidden, under the same id
            by_id = {e["instance_id"]: e["object_name"] for e in entries}
            assert sorted(by_id) == list(range(1, record["num_objects"] + 1))
            assert names is None or by_id == names
            names = by_id
        first = {a["instance_id"]: a["bbox"] for a in frames[0]["annotations"]}
        last = {a["instance_id"]: a["bbox"] for a in frames[-1]["annotations"]}
        moved += sum(first[k] != last[k] for k in first.keys() & last.keys())
        seen = [{a["instance_id"] for a in r["annotations"]} for r in frames]
        for k in names or {}:
            out_of_view = [f for f in range(FRAMES) if k not in seen[f]]
            if out_of_view:
                hidden = {h["instance_id"]: h["reason"] for h in frames[out_of_view[0]]["hidden"]}
                assert hidden[k] in ("outside_frame", "occluded")
                left_and_back += any(k in seen[f] for f in range(out_of_view[0]))
    assert moved >= SCENES  # the scenes do move
    assert left_and_back  # an object that was in the picture is out of it in a later frame, same id
    assert {r["split"] for r in records} == {"train", "val"}
    coco = dataset.load_coco(videos / "annotations.json")
    assert [(im["video_id"], im["frame_index"]) for im in coco["images"]] == \
        [(s + 1, f) for s in range(SCENES) for f in range(FRAMES)]
    assert all(a["track_id"] == a["instance_id"] for a in coco["annotations"])


def _ray_cast_ids(built: builder.BuiltScene, pixels: list[tuple[float, float]] | None = None) -> np.ndarray:
    """Pass index of what the ray through each pixel centre hits (0: background), from the camera:
    (H, W) for the whole frame, or one value per (x, y) image point of ``pixels``."""
    scene = bpy.context.scene
    depsgraph = bpy.context.evaluated_depsgraph_get()
    cam = built.camera
    top_right, _, bottom_left, top_left = cam.data.view_frame(scene=scene)
    mw = cam.matrix_world
    origin, rot = mw.translation.copy(), mw.to_3x3()
    points = pixels if pixels is not None else [(px + 0.5, py + 0.5) for py in range(H) for px in range(W)]
    ids = np.zeros(len(points), np.uint16)
    for k, (x, y) in enumerate(points):
        local = top_left + (top_right - top_left) * (x / W) + (bottom_left - top_left) * (y / H)
        hit, _, _, _, obj, _ = scene.ray_cast(depsgraph, origin, (rot @ local).normalized())
        if hit:
            ids[k] = obj.pass_index
    return ids if pixels is not None else ids.reshape(H, W)


def _same_up_to_edge_ties(ids: np.ndarray, truth: np.ndarray, built: builder.BuiltScene) -> bool:
    """True when the id map equals the ray cast except at pixels whose centre lies within 0.01 px of an
    edge (Cycles' 0.01 px filter lands on either side): there a ray 0.01 px off the centre sees Cycles' id."""
    bad = np.argwhere(ids != truth)
    if len(bad) > 3:
        return False
    for py, px in bad:
        near = [(px + 0.5 + dx, py + 0.5 + dy) for dx in (-0.01, 0.0, 0.01) for dy in (-0.01, 0.0, 0.01)]
        if ids[py, px] not in _ray_cast_ids(built, near):
            return False
    return True


def _check_masks_against_ray_casts(out: Path) -> int:
    """Pose each frame's scene in this process and compare its id map with a ray cast; returns moving frames."""
    conf = dataset.read_dataset_config(out)
    cfg = GeneratorConfig.from_dict(conf["generator"])
    task = render_image.RenderTask(cfg, out, conf["seed"], conf["num_images"], threads=1, device="CPU")
    frames = cfg.sequence.frames
    changed = 0
    for index in range(conf["num_images"]):
        s, f = plan.scene_of(index, frames)
        state = render_image._sequence_scene(task, s, render_image._Timer(None))
        motion.pose(state.built, state.rest, state.motion, f, cfg.sequence.fps)
        record = dataset.read_record(dataset.record_path(out, index))
        ids = output.read_id_map(out / record["mask_file"])
        truth = _ray_cast_ids(state.built)
        assert _same_up_to_edge_ties(ids, truth, state.built), (index, int((ids != truth).sum()))
        changed += f > 0 and not np.array_equal(
            ids, output.read_id_map(out / dataset.read_record(dataset.record_path(out, index - 1))["mask_file"]))
    return changed


def test_masks_equal_a_ray_cast_at_every_frame(videos: Path) -> None:
    assert _check_masks_against_ray_casts(videos) == SCENES * (FRAMES - 1)


def test_falling_frames_show_the_physics_drop_with_exact_masks(tmp_path: Path) -> None:
    cfg = tmp_path / "falling.json"
    cfg.write_text(json.dumps({"sequence": {"physics": "falling", "fps": 8.0, "object_speed": [0.0, 0.0],
                                            "camera_orbit": [0.0, 0.0], "camera_dolly": [0.0, 0.0]},
                               "physics": {"drop_height": [1.0, 1.5], "frames": 30},
                               "objects": {"min_visible_pixels": 1, "min_visible_fraction": 0.0}}))
    out = tmp_path / "fall"
    assert generate(["--out", str(out), "--num-images", "3", "--frames", "3", "--seed", "4", "--config", str(cfg),
                     "--physics", "--progress", "none", *COMMON]) == 0
    assert _check_masks_against_ray_casts(out) == 2  # every frame differs from the one before: they fall
    assert validate_dataset(out).ok


def test_rgb_frames_with_lens_effects_have_the_masks_only_labels(tmp_path: Path) -> None:
    """DOF, motion blur (keyed per frame) and sensor noise on every RGB frame: the labels stay those of
    the masks-only run, so each frame's pose is the sequence's, whatever an earlier frame keyed."""
    cfg = tmp_path / "looks.json"
    cfg.write_text(json.dumps({"sequence": MOTION, "lens": {"dof_probability": 1.0, "motion_blur_probability": 1.0},
                               "sensor": {"noise_probability": 1.0}}))
    args = ["--num-images", "3", "--frames", "3", "--seed", "5", "--config", str(cfg), "--progress", "none",
            *[a for a in COMMON if a != "--masks-only"]]
    assert generate(["--out", str(tmp_path / "rgb"), *args, "--samples", "2"]) == 0
    assert generate(["--out", str(tmp_path / "labels"), *args, "--masks-only"]) == 0
    for i in range(3):
        rgb, labels = (dataset.read_record(dataset.record_path(tmp_path / d, i)) for d in ("rgb", "labels"))
        assert rgb["annotations"] == labels["annotations"] and rgb["hidden"] == labels["hidden"]
        assert (tmp_path / "rgb" / rgb["mask_file"]).read_bytes() == (tmp_path / "labels" / labels["mask_file"]).read_bytes()
        assert {"dof", "motion_blur"} <= set(rgb["scene"]["lens"]) and "sensor" in rgb["scene"]
    assert validate_dataset(tmp_path / "rgb").ok


def test_vis_json_validates_and_matches_the_coco_file(videos: Path) -> None:
    report = validate_dataset(videos)
    assert report.ok, report.errors[:3]
    for name in ("annotations.json", "annotations_train.json", "annotations_val.json"):
        coco = dataset.load_coco(videos / name)
        data = json.loads((videos / vis.vis_name(name)).read_text())
        assert data == json.loads(json.dumps(vis.coco_to_vis(coco)))
    data = json.loads((videos / vis.VIS_FILE).read_text())
    assert [(v["id"], v["length"], v["frame_indices"]) for v in data["videos"]] == \
        [(s + 1, FRAMES, list(range(FRAMES))) for s in range(SCENES)]
    records = _records(videos)
    for track in data["annotations"]:
        s = track["video_id"] - 1
        for f, seg in enumerate(track["segmentations"]):
            ann = {a["instance_id"]: a for a in records[s * FRAMES + f]["annotations"]}.get(track["track_id"])
            assert (seg is None) == (ann is None)
            if ann is not None:
                assert seg == ann["segmentation"] and track["category_id"] == ann["category_id"]


def test_two_workers_equal_one_process(videos: Path, config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "w2"
    assert generate(["--out", str(out), *_args(config_file, "--workers", "2")]) == 0
    assert tree(out) == tree(videos)


def test_resume_after_kill_and_from_the_middle_of_a_scene_is_identical(videos: Path, config_file: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "killed"
    argv = [sys.executable, str(SCRIPT), "--out", str(out), *_args(config_file)]
    argv[argv.index("--progress") + 1] = "jsonl"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "progress" and event.get("step", 0) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert generate(["--out", str(out), *_args(config_file)]) == 0
    assert tree(out) == tree(videos)
    # a deterministic half-done scene: its last frames lost, one file half written, no merge yet
    for i in (6, 7):
        dataset.record_path(out, i).unlink()
    (out / "masks" / "000007.png").write_bytes(b"truncated")
    (out / "annotations.json").unlink()
    assert generate(["--out", str(out), *_args(config_file)]) == 0
    assert tree(out) == tree(videos)
    # one frame alone, in a fresh folder (its scene built for it), gives the same bytes
    only = tmp_path / "only"
    assert generate(["--out", str(only), *_args(config_file, "--only-index", "5")]) == 0
    assert dataset.completed_indices(only) == {5}
    assert (only / "masks" / "000005.png").read_bytes() == (videos / "masks" / "000005.png").read_bytes()
    assert dataset.record_path(only, 5).read_bytes() == dataset.record_path(videos, 5).read_bytes()


@pytest.mark.parametrize(
    ("extra", "sequence", "fragment"),
    [
        (["--frames", "0"], {}, "--frames must be >= 1, got 0"),
        (["--frames", "4", "--num-images", "10"], {}, "--num-images 10 is not a whole number of scenes of 4 frames"),
        (["--frames", "3"], {"camera_dolly": [-5.0, 0.0], "fps": 1.0},
         "sequence.camera_dolly [-5.0, 0.0] would bring the camera within 0.5 m of its target"),
        (["--frames", "3"], {"physics": "falling"}, "sequence.physics = 'falling' needs physics"),
        (["--frames", "3"], {"object_speed": [2.0, 1.0]}, "sequence.object_speed: low (2.0) > high (1.0)"),
        (["--frames", "3"], {"fps": 0}, "sequence.fps must be > 0"),
    ],
)
def test_bad_sequence_input_exits_2_and_writes_nothing(tmp_path: Path, capsys, extra: list[str], sequence: dict,
                                                       fragment: str) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"sequence": sequence}))
    out = tmp_path / "never"
    rc = generate(["--out", str(out), "--config", str(cfg), "--progress", "none", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists()


def test_variants_and_other_frames_are_refused(videos: Path, tmp_path: Path, capsys) -> None:
    plan_file = tmp_path / "plan.json"
    plan.write_plan(plan_file, [{"seed": 1, "count": 2}])
    out = tmp_path / "never"
    assert generate(["--out", str(out), "--variants-of", str(plan_file), "--frames", "2", "--progress", "none"]) == 2
    assert "cannot be combined with --frames" in capsys.readouterr().err
    assert not out.exists()
    before = tree(videos)
    conf = dataset.read_dataset_config(videos)
    cfg = tmp_path / "same.json"
    cfg.write_text(json.dumps(conf["generator"]))
    assert generate(["--out", str(videos), "--num-images", "8", "--frames", "2", "--seed", str(SEED),
                     "--config", str(cfg), "--progress", "none"]) == 2
    assert "sequence.frames: 4 vs 2" in capsys.readouterr().err
    assert tree(videos) == before


# --frames 1 (the default): the bytes of datasets made before sequences existed. Digests of runs of
# the generator at the commit before sequences (masks, records, COCO files, config.json without
# its version); the images and depth per Blender version, whose Cycles builds differ in the last
# bits, as rendered since Cycles keeps the shape meshes instanced between images (scene/meshes.py,
# the pools of parked objects): the ray meets a mesh in its own space, so depth differs in the last bits.
STILL_RUNS = {
    "plain": (["--num-images", "3", "--seed", "5", "--resolution", "48", "--masks-only", "--min-objects", "3",
               "--max-objects", "5", "--val-fraction", "0.34"],
              "082fb0e870414353977ad14b7fd08ad539f86e693ee8c2c71452cf4d6f5e0107",
              {(5, 3): "6f73cdf91bf3b49b800c6330dd6d744b83fd6c45ebac7c3d544a5e838c7e9db8",
               (5, 0): "6500fb0739b7e939848a179f4b1946c8f8370c591aacd53e2b33c564407368c3"}),
    "physics": (["--num-images", "2", "--seed", "6", "--resolution", "48", "--masks-only", "--min-objects", "3",
                 "--max-objects", "4", "--physics"],
                "65288ebb0896a62d6901888711d0b63a65353f75d7b1e8b2f76d241de4257255",
                {(5, 3): "3433b86db22297b4fd2d98eb5b5afdc99de73c62ad10eaa59a150c3033738895",
                 (5, 0): "e85f9054da7939f154095183ae5ed477c12c2223e0b2cdb36c1aadb4ed205155"}),
}


# Config keys added after the digests were taken, per section, with the value that renders what those
# runs rendered: left out of config.json's digest when they hold it (any other value still changes
# it), and a section left empty with them.
_ADDED_SINCE = {"looks": {"plain_probability": 0.0}, "objects": {"max_triangles": 0}}


def _digests(root: Path) -> tuple[str, str]:
    """(labels, pixels): sha256 over the files' relative names and sha256s, in name order."""
    labels, pixels = hashlib.sha256(), hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if not p.is_file() or rel.startswith(".") or "/." in rel:
            continue
        data = p.read_bytes()
        if rel == "config.json":
            conf = json.loads(data)
            conf.pop("version")
            for section, added in _ADDED_SINCE.items():
                keys = conf["generator"].get(section, {})
                for key, before in added.items():
                    if key in keys and keys[key] == before:
                        del keys[key]
                if section in conf["generator"] and not keys:
                    del conf["generator"][section]
            data = json.dumps(conf, sort_keys=True).encode()
        target = pixels if rel.startswith(("images/", "depth/")) or rel == "preview.png" else labels
        target.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return labels.hexdigest(), pixels.hexdigest()


@pytest.mark.parametrize("name", sorted(STILL_RUNS))
def test_one_frame_gives_the_bytes_of_before(name: str, tmp_path: Path) -> None:
    args, label_digest, pixel_digests = STILL_RUNS[name]
    out = tmp_path / name
    assert generate(["--out", str(out), *args, "--frames", "1", "--progress", "none", "--device", "cpu",
                     "--threads", "1"]) == 0
    labels, pixels = _digests(out)
    assert labels == label_digest
    version = tuple(bpy.app.version[:2])
    if version in pixel_digests:  # the Blender builds of this repository's two environments
        assert pixels == pixel_digests[version]
    conf = dataset.read_dataset_config(out)
    assert "sequence" not in conf["generator"] and "vis" not in conf["files"]
    assert not (out / vis.VIS_FILE).exists()
