"""The generator with the real bpy, in this process: scenes, ids, amodal masks, determinism, resume, shards.

Most runs are masks-only at 64x64 (about 0.1 s per image); one small RGB run checks the full path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

from blender_instseg.blender.generate import main as generate  # noqa: E402
from blender_instseg.blender.render import amodal, annotate  # noqa: E402
from blender_instseg.blender.render import cycles as cy  # noqa: E402
from blender_instseg.blender.render import output  # noqa: E402
from blender_instseg.blender.scene import builder  # noqa: E402
from blender_instseg.core import plan  # noqa: E402
from blender_instseg.core.formats import coco, dataset  # noqa: E402
from blender_instseg.core.genconfig import GeneratorConfig  # noqa: E402
from blender_instseg.core.validation.validate import validate_dataset  # noqa: E402

SMALL = ["--resolution", "64", "--masks-only", "--min-objects", "4", "--max-objects", "9", "--progress", "none",
         "--no-preview"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def render_scene(cfg: GeneratorConfig, seed: int) -> tuple[builder.BuiltScene, np.ndarray]:
    w, h = cfg.render.resolution
    built = builder.build_scene(cfg, seed, build_appearance=False)
    cy.configure(cy.RenderSettings(w, h, 1, True, 0, False))
    return built, cy.index_map(cy.render())


@pytest.fixture(scope="module", autouse=True)
def fresh_blender():
    builder.reset_blender()
    yield


# ---------------------------------------------------------------------------------------------------------------
# the rasteriser alone (numpy): pixel-centre exact against brute force


def test_rasterize_matches_pixel_centre_brute_force() -> None:
    rng = np.random.default_rng(3)
    h, w = 37, 53
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    for _ in range(40):
        tri = rng.uniform([-10, -10], [w + 10, h + 10], size=(3, 2))
        (x0, y0), (x1, y1), (x2, y2) = tri
        d0 = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
        d1 = (x2 - x1) * (yy - y1) - (y2 - y1) * (xx - x1)
        d2 = (x0 - x2) * (yy - y2) - (y0 - y2) * (xx - x2)
        brute = ((d0 >= 0) & (d1 >= 0) & (d2 >= 0)) | ((d0 <= 0) & (d1 <= 0) & (d2 <= 0))
        got = amodal.rasterize(tri[None], w, h)
        assert (got != brute).sum() <= 1  # only a centre lying on an edge (float ties) may differ
    # a 10x10 axis-aligned square from two triangles covers exactly 100 pixel centres
    sq = np.array([[[2, 3], [12, 3], [12, 13]], [[2, 3], [12, 13], [2, 13]]], float)
    assert amodal.rasterize(sq, w, h).sum() == 100


@pytest.mark.parametrize(("shape", "closed"), [("cube", True), ("sphere", True), ("cylinder", True), ("cone", True),
                                             ("torus", True), ("monkey", False), ("asset:gear", True),
                                             ("asset:star", True), ("asset:vase", True)])
def test_one_winding_of_a_closed_mesh_rasterises_to_the_whole_silhouette(shape: str, closed: bool) -> None:
    """mesh_amodal_mask (vertices projected once, one winding of a closed mesh) == amodal_mask over
    every world triangle, over many poses, frame cuts and the near-plane fallback."""
    from blender_instseg.blender.scene import meshes
    from mathutils import Euler, Matrix

    sm = meshes.get_shape(shape)
    assert (sm.neighbours is not None) is closed
    if closed:  # the triangle across each edge runs that edge the other way
        starts, ends = sm.tris, np.roll(sm.tris, -1, axis=1)
        across = sm.tris[sm.neighbours]
        runs_back = (across == ends[..., None]) & (np.roll(across, -1, axis=2) == starts[..., None])
        assert runs_back.any(axis=2).all()
    proj = np.array(Matrix.Identity(4))
    proj[0, 0], proj[1, 1] = 2.0, 2.0 * 64 / 48  # a 90-degree-ish pinhole looking down -Z
    proj[3, 2], proj[3, 3], proj[2, 2] = -1.0, 0.0, -1.0
    cam = amodal.Camera(np.eye(4), proj, 64, 48, 0.1)
    rng = np.random.default_rng(1)
    seen = 0
    for k in range(12):
        rot = Euler(tuple(rng.uniform(0, 6.3, 3))).to_matrix().to_4x4()
        world = np.array(Matrix.Translation((rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(1.2, 4.0))) @ rot)
        if k == 0:
            world[2, 3] = -0.2  # reaches behind the near plane: the general, clipping path
        fast = amodal.mesh_amodal_mask(sm.verts, sm.tris, world, cam, sm.neighbours)
        full = amodal.amodal_mask(amodal.world_triangles(sm.verts, sm.tris, world), cam)
        assert np.array_equal(fast.mask, full.mask)
        assert (fast.truncated, fast.bbox_px) == (full.truncated, full.bbox_px)
        seen += bool(fast.mask.any())
    assert seen >= 8
    assert amodal.closed_neighbours(sm.verts, sm.tris[:-1]) is None  # one triangle missing: open


# ---------------------------------------------------------------------------------------------------------------
# ids, amodal, depth on real renders


@pytest.mark.parametrize("shape", ["cube", "sphere", "cylinder", "cone", "torus", "monkey", "asset:gear",
                                   "asset:star", "asset:vase"])
def test_single_object_amodal_equals_cycles_mask(shape: str) -> None:
    """Alone in the scene, an object's amodal mask must equal its Cycles index-pass mask pixel for pixel."""
    cfg = GeneratorConfig()
    cfg.objects.min_count = cfg.objects.max_count = 1
    cfg.objects.shapes = {shape: cfg.objects.shapes.get(shape, "cube")}
    cfg.render.resolution = [64, 48]
    cfg.camera.distance = [2.5, 3.5]  # close: big silhouettes, often cut by the frame
    built, ids = render_scene(cfg, seed=11)
    stack, truncated = annotate.amodal_masks(built, 64, 48)
    visible = ids == 1
    assert visible.sum() > 20
    assert np.array_equal(stack[0], visible)
    # truncated <=> some vertex projects outside the frame (checked with Blender's own projection helper)
    from bpy_extras.object_utils import world_to_camera_view

    obj = built.objects[0].obj
    uv = [world_to_camera_view(bpy.context.scene, built.camera, obj.matrix_world @ v.co) for v in obj.data.vertices]
    outside = any(not (0 <= c.x <= 1 and 0 <= c.y <= 1) for c in uv)
    assert truncated[0] == outside


def test_linked_duplicates_get_distinct_ids() -> None:
    """Objects sharing one mesh (and material) datablock still get their own ids and masks."""
    cfg = GeneratorConfig(categories=["box"])
    cfg.objects.shapes = {"cube": "box"}
    cfg.objects.min_count = cfg.objects.max_count = 6
    cfg.objects.linked_duplicates = 1.0
    cfg.render.resolution = [64, 64]
    built = builder.build_scene(cfg, 5, build_appearance=True)
    assert len({so.obj.data.name for so in built.objects}) == 1
    assert len({so.obj.material_slots[0].material.name for so in built.objects}) == 1
    assert [so.obj.pass_index for so in built.objects] == [1, 2, 3, 4, 5, 6]
    cy.configure(cy.RenderSettings(64, 64, 1, True, 0, False))
    ids = cy.index_map(cy.render())
    present = sorted(set(np.unique(ids).tolist()) - {0})
    assert len(present) >= 4 and set(present) <= {1, 2, 3, 4, 5, 6}
    anns, hidden, _ = annotate.build_annotations(built, ids)
    assert {a["instance_id"] for a in anns} == set(present)
    assert {a["category_id"] for a in anns} == {1}
    assert len(anns) + len(hidden) == 6


def _labels(cfg: GeneratorConfig, seed: int, appearance: bool) -> tuple[np.ndarray, list, list, list, set[int]]:
    built = builder.build_scene(cfg, seed, build_appearance=appearance)
    w, h = cfg.render.resolution
    cy.configure(cy.RenderSettings(w, h, 1, True, 0, False))
    ids = cy.index_map(cy.render())
    anns, hidden, _ = annotate.build_annotations(built, ids)
    state = [(so.obj.name, so.obj.pass_index, tuple(so.obj.matrix_world.col[3]), dict(so.obj.items()),
              [(slot.link, slot.material.name if slot.material else None) for slot in so.obj.material_slots])
             for so in built.objects]
    return ids, anns, hidden, state, {so.obj.as_pointer() for so in built.objects}


def test_objects_of_earlier_scenes_come_back_as_new_ones_would() -> None:
    """Scene objects are reused from image to image (parked in between, so Cycles keeps their meshes):
    a scene built after others gives the ids, annotations and object state of the same scene built
    first in a fresh Blender, and building it once more makes no new object."""
    cfg = GeneratorConfig()
    cfg.objects.min_count, cfg.objects.max_count = 6, 9
    cfg.render.resolution = [64, 64]
    builder.reset_blender()
    fresh = _labels(cfg, 11, True)
    builder.reset_blender()
    for seed in (3, 4, 5, 6, 7, 8):
        _labels(cfg, seed, seed % 2 == 0)  # with and without materials
    before = {o.as_pointer() for o in bpy.data.objects}
    again = _labels(cfg, 11, True)
    assert len(again[4] & before) >= 3  # objects of earlier scenes
    assert np.array_equal(fresh[0], again[0])
    assert fresh[1:4] == again[1:4]
    parked = [o for o in bpy.data.objects if o.get("instseg_pooled") and not o.visible_camera]
    assert parked and all(o.location.z < -1000 for o in parked) and not any(set(o.keys()) - {"instseg_pooled"} for o in parked)
    count = len(bpy.data.objects)
    assert _labels(cfg, 11, True)[4] == again[4] and len(bpy.data.objects) == count  # no new object for it
    ground = bpy.data.objects["ground"]  # the ground is pooled too, and comes back as a new one would
    assert ground.get("instseg_pooled") and ground.as_pointer() in before and ground.location.z == 0.0
    assert ground.data.uv_layers and not ground.is_shadow_catcher and ground.visible_camera
    _labels(cfg, 12, False)
    clay = bpy.context.scene.world
    _labels(cfg, 13, False)
    assert bpy.context.scene.world == clay  # masks-only scenes share one world (a new one re-syncs every mesh)
    builder.reset_blender()


def test_amodal_masks_made_during_the_render_serve_only_the_scene_they_were_made_for() -> None:
    """AmodalAhead computes the amodal masks in a thread while Cycles renders: they equal the masks
    computed afterwards, are handed out once, and not at all once an object has moved."""
    cfg = GeneratorConfig()
    cfg.objects.min_count, cfg.objects.max_count = 5, 8
    cfg.render.resolution = [64, 64]
    builder.reset_blender()
    built = builder.build_scene(cfg, 21, build_appearance=False)
    cy.configure(cy.RenderSettings(64, 64, 1, True, 0, False))
    ahead = annotate.AmodalAhead()
    ahead.start(built)
    ids = cy.index_map(cy.render())
    inputs = annotate.amodal_inputs(built)
    early = ahead.take(inputs)
    assert early is not None and len(early) == len(built.objects)
    after = annotate.compute_amodal(inputs)
    assert all(np.array_equal(a.mask, b.mask) and a.truncated == b.truncated for a, b in zip(early, after))
    assert ahead.take(inputs) is None  # handed out once
    ahead.start(built)
    assert annotate.build_annotations(built, ids, ahead=ahead) == annotate.build_annotations(built, ids)
    assert ahead.take(inputs) is None  # build_annotations took them
    ahead.start(built)
    built.objects[0].obj.location.x += 0.3
    bpy.context.view_layer.update()
    moved = annotate.amodal_inputs(built)
    assert not moved.same_as(inputs) and ahead.take(moved) is None  # the caller computes them anew
    builder.reset_blender()


def test_visible_subset_of_amodal_and_hidden_reasons() -> None:
    cfg = GeneratorConfig()
    cfg.objects.min_count = cfg.objects.max_count = 25
    cfg.objects.scale = [0.2, 1.0]
    cfg.camera.fit_objects = False  # a close camera: some objects fall outside the frame, some get covered
    cfg.camera.distance = [3.0, 4.0]
    cfg.camera.elevation = [10.0, 20.0]
    cfg.render.resolution = [64, 64]
    n_hidden = 0
    reasons = set()
    for seed in range(4):
        built, ids = render_scene(cfg, seed)
        anns, hidden, fixups = annotate.build_annotations(built, ids)
        assert len(anns) + len(hidden) == 25
        assert fixups <= 2  # edge pixels where float rounding differs from Cycles: expected ~0
        for a in anns:
            vis = coco.decode_segmentation(a["segmentation"], 64, 64).astype(bool)
            am = coco.decode_segmentation(a["amodal_segmentation"], 64, 64).astype(bool)
            assert np.array_equal(vis, ids == a["instance_id"])
            assert not (vis & ~am).any()
            assert a["visible_fraction"] == pytest.approx(vis.sum() / am.sum())
            assert 0 < a["visible_fraction"] <= 1
        for hd in hidden:
            assert hd["reason"] in ("occluded", "outside_frame")
            assert (hd["amodal_area"] == 0) == (hd["reason"] == "outside_frame")
            assert not (ids == hd["instance_id"]).any()
            reasons.add(hd["reason"])
        n_hidden += len(hidden)
    assert reasons == {"occluded", "outside_frame"}  # both branches above ran


def test_objects_below_the_visibility_filters_are_hidden_and_cleared_from_the_id_map(tmp_path: Path) -> None:
    """min_visible_pixels / min_visible_fraction: an object seen by a few pixels, or mostly covered,
    is not annotated; it is listed as hidden 'too_little_visible' and its pixels become background."""
    cfg = GeneratorConfig()
    cfg.objects.min_count = cfg.objects.max_count = 25
    cfg.objects.scale = [0.2, 1.0]
    cfg.camera.fit_objects = False
    cfg.camera.distance = [3.0, 4.0]
    cfg.camera.elevation = [10.0, 20.0]
    cfg.render.resolution = [64, 64]
    dropped = 0
    for seed in range(3):
        built, ids = render_scene(cfg, seed)
        every, _, _ = annotate.build_annotations(built, ids)
        anns, hidden, _ = annotate.build_annotations(built, ids, min_pixels=40, min_fraction=0.5)
        assert len(anns) + len(hidden) == 25
        assert all(a["area"] >= 40 and a["visible_fraction"] >= 0.5 for a in anns)
        low = [h for h in hidden if h["reason"] == "too_little_visible"]
        assert {h["instance_id"] for h in low} == {a["instance_id"] for a in every
                                                  if a["area"] < 40 or a["visible_fraction"] < 0.5}
        assert all(h["visible_area"] == (ids == h["instance_id"]).sum() for h in low)
        assert annotate.too_little_visible_ids(hidden) == [h["instance_id"] for h in low]
        dropped += len(low)
    assert dropped > 0  # the filter had something to do
    # through the generator: the masks hold no id of a dropped object, and the dataset validates
    config = tmp_path / "filters.json"
    config.write_text(json.dumps({"objects": {"min_visible_pixels": 60, "min_visible_fraction": 0.4,
                                              "allow_hidden": True}}), encoding="utf-8")
    out = tmp_path / "ds"
    assert generate(["--out", str(out), "--config", str(config), *SMALL, "--num-images", "3",
                     "--min-objects", "14", "--max-objects", "16"]) == 0
    assert validate_dataset(out).ok
    seen_low = 0
    for index in range(3):
        rec = dataset.read_record(dataset.record_path(out, index))
        ids = output.read_id_map(out / rec["mask_file"])
        low = [h["instance_id"] for h in rec["hidden"] if h["reason"] == "too_little_visible"]
        seen_low += len(low)
        assert set(np.unique(ids).tolist()) - {0} == {a["instance_id"] for a in rec["annotations"]}
        assert all(a["area"] >= 60 and a["visible_fraction"] >= 0.4 for a in rec["annotations"])
    assert seen_low > 0


def test_depth_is_z_depth_in_metres() -> None:
    """Looking straight down at the ground from height d, every ground pixel has depth d (z-depth)."""
    cfg = GeneratorConfig()
    cfg.objects.min_count = cfg.objects.max_count = 0
    cfg.camera.elevation = [89.999, 89.999]
    cfg.camera.distance = [4.0, 4.0]
    cfg.camera.jitter = 0.0
    builder.build_scene(cfg, 1, build_appearance=False)
    cy.configure(cy.RenderSettings(32, 32, 1, True, 0, True))
    depth = cy.depth_map(cy.render())
    assert depth is not None
    np.testing.assert_allclose(depth, 4.0, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# the CLI loop in-process: determinism, resume, shards, only-index, validator


def test_same_seed_same_bytes_and_valid(tmp_path: Path) -> None:
    args = ["--num-images", "3", "--seed", "7", *SMALL, "--val-fraction", "0.34"]
    assert generate(["--out", str(tmp_path / "a"), *args]) == 0
    assert generate(["--out", str(tmp_path / "b"), *args]) == 0
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    assert {"annotations.json", "annotations_train.json", "annotations_val.json", "config.json"} <= a.keys()
    assert {f"masks/{i:06d}.png" for i in range(3)} <= a.keys() and "depth/000002.exr" in a
    report = validate_dataset(tmp_path / "a")
    assert report.ok, report.errors[:3]
    assert generate(["--out", str(tmp_path / "c"), *args[:-2], "--seed", "8"]) == 0
    assert tree(tmp_path / "c")["masks/000000.png"] != a["masks/000000.png"]
    recs = [json.loads(a[f"records/{i:06d}.json"]) for i in range(3)]
    assert [r["seed"] for r in recs] == [plan.image_seed(7, i) for i in range(3)]


def test_rgb_run_is_deterministic_and_valid(tmp_path: Path) -> None:
    args = ["--num-images", "2", "--seed", "3", "--resolution", "48", "--samples", "2", "--min-objects", "3",
            "--max-objects", "5", "--progress", "none", "--mask-format", "polygon", "--export", "yolo"]
    assert generate(["--out", str(tmp_path / "a"), *args]) == 0
    assert generate(["--out", str(tmp_path / "b"), *args]) == 0
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    # dataset.yaml names no folder (ultralytics reads the yaml's own), so it matches byte for byte too
    assert b"path:" not in a["dataset.yaml"]
    assert a == b
    assert "preview.png" in a and any(k.startswith("labels/") for k in a)
    coco_json = json.loads(a["annotations.json"])
    assert isinstance(coco_json["annotations"][0]["segmentation"], list)  # polygons
    report = validate_dataset(tmp_path / "a")
    assert report.ok, report.errors[:3]


def test_antialiased_rgb_keeps_exact_labels(tmp_path: Path) -> None:
    """Anti-aliased RGB (labels from a separate pixel-centre render) and aliased RGB (one render) label alike."""
    cfg = tmp_path / "aliased.json"
    cfg.write_text(json.dumps({"render": {"antialias": False}}))
    # --allow-hidden: the visibility checks run at different sizes in the two modes and could move
    # different objects; without moves the scenes are the same and only the label source differs
    args = ["--num-images", "2", "--seed", "12", "--resolution", "48", "--samples", "2", "--progress", "none",
            "--no-preview", "--allow-hidden"]
    assert generate(["--out", str(tmp_path / "aa"), *args]) == 0
    assert generate(["--out", str(tmp_path / "plain"), *args, "--config", str(cfg)]) == 0
    aa, plain = tree(tmp_path / "aa"), tree(tmp_path / "plain")
    for i in range(2):
        assert aa[f"masks/{i:06d}.png"] == plain[f"masks/{i:06d}.png"]
        assert aa[f"depth/{i:06d}.exr"] == plain[f"depth/{i:06d}.exr"]
        assert aa[f"records/{i:06d}.json"] == plain[f"records/{i:06d}.json"]
        assert aa[f"images/{i:06d}.png"] != plain[f"images/{i:06d}.png"]


def test_resume_after_interruption_gives_identical_dataset(tmp_path: Path) -> None:
    args = ["--num-images", "4", "--seed", "2", *SMALL]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert generate(["--out", str(ref), *args]) == 0
    assert generate(["--out", str(run), *args]) == 0
    # simulate a kill: the last image's record never got written, another image half done
    (run / "records" / "000003.json").unlink()
    (run / "records" / "000001.json").unlink()
    (run / "masks" / "000001.png").write_bytes(b"truncated")
    (run / "annotations.json").unlink()
    (run / "records" / ".000002.json.123.tmp").write_text("{")  # a temp file from an atomic write
    assert dataset.completed_indices(run) == {0, 2}
    assert generate(["--out", str(run), *args]) == 0
    (run / "records" / ".000002.json.123.tmp").unlink()
    assert tree(run) == tree(ref)


def test_shards_then_merge_equal_single_run(tmp_path: Path) -> None:
    args = ["--num-images", "5", "--seed", "4", *SMALL]
    assert generate(["--out", str(tmp_path / "single"), *args]) == 0
    for i in range(2):
        assert generate(["--out", str(tmp_path / f"s{i}"), *args, "--shard", str(i), "--num-shards", "2",
                         "--no-merge"]) == 0
    assert dataset.completed_indices(tmp_path / "s1") == {1, 3}
    assert generate(["--out", str(tmp_path / "all"), "--merge", str(tmp_path / "s0"), str(tmp_path / "s1"),
                     "--progress", "none", "--no-preview"]) == 0
    single, merged = tree(tmp_path / "single"), tree(tmp_path / "all")
    assert merged == single


def test_only_index_rerenders_one_image(tmp_path: Path) -> None:
    args = ["--num-images", "3", "--seed", "9", *SMALL]
    out = tmp_path / "d"
    assert generate(["--out", str(out), *args]) == 0
    before = tree(out)
    (out / "masks" / "000001.png").unlink()
    (out / "records" / "000001.json").unlink()
    assert generate(["--out", str(out), *args, "--only-index", "1"]) == 0
    assert tree(out) == before
    # in a fresh folder it renders just that image (same bytes) and leaves the merge for later
    fresh = tmp_path / "fresh"
    assert generate(["--out", str(fresh), *args, "--only-index", "2"]) == 0
    assert dataset.completed_indices(fresh) == {2} and not (fresh / "annotations.json").exists()
    assert (fresh / "masks" / "000002.png").read_bytes() == before["masks/000002.png"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--num-images", "-1"], "--num-images must be in [1, 2147483647], got -1"),
        (["--min-objects", "-2"], "objects.min_count must be >= 0"),
        (["--min-objects", "9", "--max-objects", "3"], "objects.min_count (9) > objects.max_count (3)"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--shard", "2", "--num-shards", "2"], "--shard must be in [0, 1]"),
        (["--resolution", "big"], "--resolution must be R or WxH"),
        (["--samples", "0"], "render.samples must be >= 1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path: Path, capsys, extra: list[str], fragment: str) -> None:
    out = tmp_path / "never"
    rc = generate(["--out", str(out), "--progress", "none", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and fragment in err[0]
    assert not out.exists()


def test_bad_paths_and_configs_exit_2(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert generate(["--out", str(blocker / "sub"), "--progress", "none"]) == 2
    assert "not writable" in capsys.readouterr().err
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"categories": ["thing"], "objects": {"shapes": {"asset:nope": "thing"}}}))
    assert generate(["--out", str(tmp_path / "o1"), "--config", str(cfg), "--progress", "none"]) == 2
    assert "unknown asset 'nope'" in capsys.readouterr().err
    cfg.write_text('{"objects": {"min_count": ')
    assert generate(["--out", str(tmp_path / "o2"), "--config", str(cfg), "--progress", "none"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    # resuming into a folder made with other settings is refused before anything is touched
    out = tmp_path / "ds"
    assert generate(["--out", str(out), "--num-images", "1", *SMALL]) == 0
    before = tree(out)
    assert generate(["--out", str(out), "--num-images", "1", *SMALL, "--seed", "5"]) == 2
    assert "other settings (seed: 0 vs 5)" in capsys.readouterr().err
    assert tree(out) == before


def test_hidden_objects_are_moved_into_view_unless_allowed(tmp_path: Path) -> None:
    common = ["--num-images", "3", "--seed", "1", "--resolution", "64", "--masks-only", "--min-objects", "25",
              "--max-objects", "25", "--progress", "none", "--no-preview", "--no-merge"]
    assert generate(["--out", str(tmp_path / "allow"), *common, "--allow-hidden"]) == 0
    assert generate(["--out", str(tmp_path / "fix"), *common]) == 0

    def hidden_count(root: Path) -> int:
        return sum(len(dataset.read_record(p)["hidden"]) for p in sorted((root / "records").glob("*.json")))

    assert hidden_count(tmp_path / "fix") < hidden_count(tmp_path / "allow")


def test_physics_drop_is_deterministic(tmp_path: Path) -> None:
    args = ["--num-images", "2", "--seed", "6", *SMALL, "--physics"]
    assert generate(["--out", str(tmp_path / "a"), *args]) == 0
    assert generate(["--out", str(tmp_path / "b"), *args]) == 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    rec = dataset.read_record(tmp_path / "a" / "records" / "000000.json")
    assert rec["scene"]["physics"] is True
    assert validate_dataset(tmp_path / "a").ok
    shutil.rmtree(tmp_path / "b")


def test_semantic_and_panoptic_outputs_validate_and_equal_the_export_command(tmp_path: Path) -> None:
    """--export semantic panoptic (here one via the config) gives valid outputs; the core
    export-panoptic command on a dataset generated without them writes the same bytes."""
    from blender_instseg.core.formats import panoptic
    from blender_instseg.core.__main__ import main as core_main

    cfg = tmp_path / "semantic.json"
    cfg.write_text(json.dumps({"output": {"export_semantic": True}}))
    args = ["--num-images", "3", "--seed", "6", *SMALL, "--val-fraction", "0.34"]
    assert generate(["--out", str(tmp_path / "a"), *args, "--config", str(cfg), "--export", "panoptic"]) == 0
    assert generate(["--out", str(tmp_path / "b"), *args]) == 0
    a = tree(tmp_path / "a")
    outputs = {k for k in a if k.startswith(("semantic/", "panoptic"))}
    assert {"panoptic.json", "panoptic_train.json", "panoptic_val.json"} <= outputs
    assert {f"{d}/{i:06d}.png" for d in ("semantic", "panoptic") for i in range(3)} <= outputs
    report = validate_dataset(tmp_path / "a")
    assert report.ok, report.errors[:3]
    assert report.summary["files"]["annotations.json"]["outputs"] == ["panoptic.json", "semantic/"]
    pan = json.loads(a["panoptic.json"])
    for i, entry in enumerate(pan["annotations"]):
        record = json.loads(a[f"records/{i:06d}.json"])
        ids = sorted(ann["instance_id"] for ann in record["annotations"])
        assert [s["id"] for s in entry["segments_info"]] == ids + [panoptic.BACKGROUND_SEGMENT_ID]
    assert core_main(["export-panoptic", str(tmp_path / "b")]) == 0
    b = tree(tmp_path / "b")
    assert {k: b[k] for k in outputs} == {k: a[k] for k in outputs}
