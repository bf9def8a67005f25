"""The user's own asset files as the objects to segment (scripts/generate.py --assets DIR).

The assets are made by this test in a child bpy process and written through Blender's own exporters
(glTF, OBJ + MTL, PLY, STL, .blend), as a user's files would be: nothing is shipped. They come back
in through Blender's importers (blender/scene/assets.py), and the checks are: categories from the
folder layout, the files' materials in the render, upright placement and real size, one mesh per
asset shared by every instance and every scene, masks that equal the amodal rasteriser on the merged
mesh (the exactness check of tests/blender/test_generate.py), the validator, and bad input refused
in one line before anything is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = [pytest.mark.bpy, pytest.mark.usefixtures("fresh_blender_each_test")]

import bpy  # noqa: E402

from blender_instseg.blender.render import annotate  # noqa: E402
from blender_instseg.blender.render import cycles as cy  # noqa: E402
from blender_instseg.blender.scene import builder, meshes  # noqa: E402
from blender_instseg.core.formats import coco  # noqa: E402
from blender_instseg.core.genconfig import GeneratorConfig  # noqa: E402
from blender_instseg.generator import sources  # noqa: E402
from tests.blender.bpy_child import run_bpy_script  # noqa: E402
from tests.blender.exact_masks import assert_one_object_mask_is_exact  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "generate.py"

MAKE_ASSETS = r"""
import sys
from pathlib import Path
import bpy

out = Path(sys.argv[1])

def fresh():
    bpy.ops.wm.read_factory_settings(use_empty=True)

def material(name, rgb):
    m = bpy.data.materials.new(name)
    if not m.use_nodes:
        m.use_nodes = True
    m.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    m.diffuse_color = (*rgb, 1.0)
    return m

for sub in ("boxes", "poles"):
    (out / sub).mkdir(parents=True, exist_ok=True)
fresh()
bpy.ops.mesh.primitive_cube_add(size=0.5)
bpy.context.object.data.materials.append(material("red", (0.9, 0.02, 0.02)))
bpy.ops.export_scene.gltf(filepath=str(out / "boxes" / "red.glb"))
fresh()
bpy.ops.mesh.primitive_cylinder_add(radius=0.1, depth=1.0)  # a pole: tall along +z
bpy.context.object.data.materials.append(material("green", (0.02, 0.9, 0.02)))
bpy.ops.wm.obj_export(filepath=str(out / "poles" / "green.obj"))
fresh()
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.3)
bpy.ops.wm.ply_export(filepath=str(out / "ball.ply"))
fresh()
bpy.ops.mesh.primitive_cone_add(radius1=0.3, depth=0.6)
bpy.ops.wm.stl_export(filepath=str(out / "cone.stl"))
fresh()
# two parts under an empty, each with its own material: merged into one mesh with two slots
parent = bpy.data.objects.new("pair", None)
bpy.context.scene.collection.objects.link(parent)
for x, name, rgb in ((-0.6, "left", (0.9, 0.02, 0.02)), (0.6, "right", (0.02, 0.02, 0.9))):
    bpy.ops.mesh.primitive_cube_add(size=0.4, location=(x, 0.0, 0.0))
    part = bpy.context.object
    part.name = name
    part.data.materials.append(material(name, rgb))
    part.parent = parent
parent.location = (5.0, 0.0, 0.0)  # the file's own placement must not matter
bpy.ops.wm.save_as_mainfile(filepath=str(out / "pair.blend"))
"""

CATEGORIES = ["ball", "boxes", "cone", "pair", "poles"]


@pytest.fixture(scope="module")
def assets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("user_assets") / "assets"
    run_bpy_script(MAKE_ASSETS, out.parent, str(out))
    return out


def _cfg(assets_dir: Path, **objects) -> GeneratorConfig:
    cfg = GeneratorConfig()
    sources.use_asset_folder(cfg, assets_dir)
    for key, value in objects.items():
        setattr(cfg.objects, key, value)
    cfg.render.resolution = [64, 48]
    return cfg.validate()


def test_the_folder_layout_gives_the_categories(assets_dir: Path) -> None:
    shapes = sources.scan_assets(assets_dir)
    assert shapes == {"file:ball.ply": "ball", "file:boxes/red.glb": "boxes", "file:cone.stl": "cone",
                      "file:pair.blend": "pair", "file:poles/green.obj": "poles"}  # green.mtl is not an asset
    cfg = _cfg(assets_dir)
    assert cfg.categories == CATEGORIES and cfg.objects.assets_dir == str(assets_dir.resolve())


def test_parts_merge_into_one_mesh_with_their_materials_and_every_instance_shares_it(assets_dir: Path) -> None:
    cfg = _cfg(assets_dir, min_count=12, max_count=12)
    pair = meshes.get_shape("file:pair.blend", user_dir=cfg.objects.assets_dir)
    assert [m.name for m in pair.mesh.materials] == ["left", "right"] and pair.own_materials
    assert len(pair.mesh.polygons) == 12  # two cubes
    # the file's placement (the parent empty at x=5) is gone: centred, largest half-extent 1
    assert np.allclose(pair.verts.max(0), -pair.verts.min(0)) and np.isclose(np.abs(pair.verts).max(), 1.0)
    assert np.isclose(pair.size, 0.8)  # its own size: 1.6 m wide
    ply = meshes.get_shape("file:ball.ply", user_dir=cfg.objects.assets_dir)
    assert not ply.own_materials  # a PLY has no material: the random palette paints it
    by_shape: dict[str, set[str]] = {}
    meshes_before = 0
    for seed in (3, 4):
        built = builder.build_scene(cfg, seed)
        for so in built.objects:
            by_shape.setdefault(so.shape, set()).add(so.obj.data.name)
        if seed == 3:
            meshes_before = len(bpy.data.meshes)
    assert len(bpy.data.meshes) == meshes_before  # nothing imported again for the next scene
    assert len(by_shape) >= 3 and all(len(names) == 1 for names in by_shape.values()), by_shape


@pytest.mark.parametrize("shape", ["file:boxes/red.glb", "file:poles/green.obj", "file:ball.ply", "file:cone.stl",
                                   "file:pair.blend"])
def test_single_asset_amodal_equals_cycles_mask(assets_dir: Path, shape: str) -> None:
    """The merged, normalised mesh the annotations use is exactly what Cycles renders."""
    cfg = _cfg(assets_dir, min_count=1, max_count=1)
    cfg.objects.shapes = {shape: cfg.objects.shapes[shape]}
    cfg.camera.distance = [2.5, 3.5]
    built = builder.build_scene(cfg, 11, build_appearance=False)
    assert_one_object_mask_is_exact(built, 64, 48)


def test_upright_keeps_the_up_axis_and_real_size_keeps_metres(assets_dir: Path) -> None:
    cfg = _cfg(assets_dir, min_count=10, max_count=10, placement="upright", real_size=True)
    built = builder.build_scene(cfg, 5, build_appearance=False)
    assert built.objects
    for so in built.objects:
        up = np.array(so.obj.matrix_world.to_3x3().normalized()) @ np.array([0.0, 0.0, 1.0])
        assert np.allclose(up, [0.0, 0.0, 1.0], atol=1e-6), (so.shape, up)
        assert np.isclose(so.obj.scale[0], so.shape_mesh.size)
    poles = [so for so in built.objects if so.shape == "file:poles/green.obj"]
    for so in poles:  # a 1 m pole stands: its top 1 m above its bottom
        corners = [so.obj.matrix_world @ v.co for v in so.obj.data.vertices]
        assert np.isclose(max(c.z for c in corners) - min(c.z for c in corners), 1.0, atol=1e-4)
    # free placement (the default) tilts them
    tilted = builder.build_scene(_cfg(assets_dir, min_count=10, max_count=10), 5, build_appearance=False)
    ups = [np.array(so.obj.matrix_world.to_3x3().normalized()) @ np.array([0.0, 0.0, 1.0]) for so in tilted.objects]
    assert any(abs(u[2]) < 0.99 for u in ups)


def test_per_category_override(assets_dir: Path) -> None:
    cfg = _cfg(assets_dir, min_count=10, max_count=10, per_category={"poles": {"placement": "upright"}})
    assert cfg.placement_of("file:poles/green.obj") == "upright" and cfg.placement_of("file:ball.ply") == "free"
    counted = _cfg(assets_dir, min_count=0, max_count=2,
                   per_category={"poles": {"count": [3, 3]}, "boxes": {"count": [1, 2]}})
    for seed in range(3):
        built = builder.build_scene(counted, seed, build_appearance=False)
        per = {}
        for so in built.objects:
            per[counted.objects.shapes[so.shape]] = per.get(counted.objects.shapes[so.shape], 0) + 1
        assert per.get("poles") == 3 and 1 <= per.get("boxes", 0) <= 2
        assert sum(n for cat, n in per.items() if cat not in ("poles", "boxes")) <= 2
    with pytest.raises(ValueError, match="count must be"):
        _cfg(assets_dir, per_category={"poles": {"count": [3, 1]}})
    with pytest.raises(ValueError, match="per_category names 'chairs'"):
        _cfg(assets_dir, per_category={"chairs": {"placement": "upright"}})
    with pytest.raises(ValueError, match="placement must be one of free, upright"):
        _cfg(assets_dir, placement="sideways")


def _lowest_z(so: builder.SceneObject) -> float:
    m = np.array(so.obj.matrix_world)
    return float((so.shape_mesh.verts @ m[:3, :3].T + m[:3, 3])[:, 2].min())


def test_per_category_physics_drops_some_and_leaves_the_others_standing(assets_dir: Path) -> None:
    """Physics is off globally and on for boxes: the boxes fall from their drop height, the poles
    (physics false) stay exactly where they were placed, standing on the ground."""
    per = {"poles": {"count": [2, 2], "physics": False, "placement": "upright"}, "boxes": {"count": [3, 3], "physics": True}}
    cfg = _cfg(assets_dir, min_count=0, max_count=0, per_category=per)
    cfg.physics.drop_height = [1.0, 1.5]
    assert cfg.simulates() and not cfg.physics.enabled
    assert cfg.physics_of("file:boxes/red.glb") and not cfg.physics_of("file:poles/green.obj")
    built = builder.build_scene(cfg, 4, build_appearance=False)
    assert built.params["physics"] is True
    poles = [so for so in built.objects if so.shape == "file:poles/green.obj"]
    boxes = [so for so in built.objects if so.shape == "file:boxes/red.glb"]
    assert len(poles) == 2 and len(boxes) == 3
    for so in poles:  # placed on the ground (1e-4 above it), upright, never moved
        assert abs(_lowest_z(so) - 1e-4) < 1e-6
        assert abs(so.obj.matrix_world.to_3x3().normalized()[2][2] - 1.0) < 1e-6
    for so in boxes:  # dropped from >= 1 m, resting on the ground or on another object
        assert _lowest_z(so) < 0.9
    with pytest.raises(ValueError, match="physics must be true or false"):
        _cfg(assets_dir, per_category={"poles": {"physics": "yes"}})


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_generated_dataset_keeps_the_files_materials_and_validates(assets_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "white_light.toml"
    config.write_text("[lights]\nsaturation = [0.0, 0.0]\n[world]\nstrength = [0.3, 0.3]\n", encoding="utf-8")
    out = tmp_path / "ds"
    proc = _generate("--assets", str(assets_dir), "--config", str(config), "--out", str(out), "--num-images", "3",
                     "--seed", "2", "--resolution", "96", "--samples", "8", "--min-objects", "6", "--max-objects",
                     "8", "--progress", "jsonl", "--no-preview")
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = subprocess.run([sys.executable, "-m", "blender_instseg.core", "validate", str(out)], capture_output=True,
                           text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
    gt = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in gt["categories"]] == CATEGORIES
    names = {c["id"]: c["name"] for c in gt["categories"]}
    files = {im["id"]: im["file_name"] for im in gt["images"]}
    colours: dict[str, list[np.ndarray]] = {"boxes": [], "poles": []}
    for ann in gt["annotations"]:
        name = names[ann["category_id"]]
        if name not in colours or ann["area"] < 20:
            continue
        rgb = cv2.cvtColor(cv2.imread(str(out / files[ann["image_id"]])), cv2.COLOR_BGR2RGB).astype(float)
        mask = coco.decode_segmentation(ann["segmentation"], rgb.shape[0], rgb.shape[1]).astype(bool)
        colours[name].append(rgb[mask].mean(0))
    assert colours["boxes"] and colours["poles"], "no visible box or pole to look at"
    for r, g, b in colours["boxes"]:  # red.glb's material, not the random palette
        assert r > 1.5 * g and r > 1.5 * b, (r, g, b)
    for r, g, b in colours["poles"]:  # green.obj's .mtl
        assert g > 1.5 * r and g > 1.5 * b, (r, g, b)


@pytest.mark.parametrize("case", ["empty", "missing", "corrupt", "points", "mapping"])
def test_bad_assets_exit_2_with_one_error_line_and_write_nothing(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "assets"
    folder.mkdir()
    extra: list[str] = []
    if case == "missing":
        folder = tmp_path / "nowhere"
        fragment = "asset folder not found"
    elif case == "empty":
        (folder / "notes.txt").write_text("no meshes here")
        fragment = "holds no file Blender can import"
    elif case == "corrupt":
        (folder / "broken.glb").write_bytes(b"not a glTF file")
        fragment = f"cannot import {folder / 'broken.glb'}"
    elif case == "points":
        (folder / "points.obj").write_text("v 0 0 0\nv 1 0 0\n")
        fragment = "holds no faces"
    else:
        (folder / "a.ply").write_text("ply\n")  # never read: the mapping fails first
        config = tmp_path / "map.toml"
        config.write_text('categories = ["chair"]\n[objects]\nassets_dir = "assets"\n'
                          '[objects.shapes]\n"file:chairs/oak.glb" = "chair"\n', encoding="utf-8")
        extra = ["--config", str(config)]
        fragment = "names 'file:chairs/oak.glb' but"
    out = tmp_path / "out"
    args = ["--out", str(out), "--num-images", "2", "--resolution", "32", "--masks-only", "--progress", "none"]
    proc = _generate(*(["--assets", str(folder)] if case != "mapping" else []), *extra, *args)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_distractors_occlude_but_are_never_annotated(assets_dir: Path) -> None:
    cfg = GeneratorConfig()
    cfg.objects.min_count, cfg.objects.max_count = 8, 8
    cfg.render.resolution = [96, 96]
    plain = cfg.copy()
    sources.use_distractor_folder(cfg, assets_dir)
    cfg.distractors.min_count = cfg.distractors.max_count = 6
    cfg.distractors.scale = [0.6, 1.0]
    cfg.validate()
    covered = 0
    for seed in range(3):
        base = builder.build_scene(plain.validate(), seed, build_appearance=False)
        base_layout = {so.instance_id: tuple(so.obj.matrix_world.translation) for so in base.objects}
        cy.configure(cy.RenderSettings(96, 96, 1, True, 0, False))
        alone = cy.index_map(cy.render())
        built = builder.build_scene(cfg, seed, build_appearance=False)
        # the objects are where they were without distractors: those draw from their own stream
        assert {so.instance_id: tuple(so.obj.matrix_world.translation) for so in built.objects} == base_layout
        extra = [o for o in bpy.context.scene.objects if o.get("instseg_distractor")]
        assert len(extra) == 6 and all(o.pass_index == 0 for o in extra)
        cy.configure(cy.RenderSettings(96, 96, 1, True, 0, False))
        ids = cy.index_map(cy.render())
        anns, hidden, _ = annotate.build_annotations(built, ids)
        assert set(np.unique(ids).tolist()) - {0} <= {so.instance_id for so in built.objects}
        for so in built.objects:  # a distractor only ever takes pixels away
            assert not ((ids == so.instance_id) & (alone != so.instance_id)).any()
            covered += int(((alone == so.instance_id) & (ids != so.instance_id)).sum())
        for a in anns:  # and the visible fraction counts what it covers
            assert a["area"] == (ids == a["instance_id"]).sum() and a["visible_fraction"] <= 1
        assert len(anns) + len(hidden) == len(built.objects)
    assert covered > 0, "no distractor covered any object: the check above had nothing to check"


def test_generate_with_distractors_keeps_the_categories_and_validates(assets_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    proc = _generate("--distractors", str(assets_dir), "--max-distractors", "4", "--out", str(out), "--num-images",
                     "2", "--resolution", "64", "--masks-only", "--progress", "none", "--no-preview")
    assert proc.returncode == 0, proc.stderr[-2000:]
    gt = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in gt["categories"]] == GeneratorConfig().categories  # distractors add none
    check = subprocess.run([sys.executable, "-m", "blender_instseg.core", "validate", str(out)], capture_output=True,
                           text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
    bad = _generate("--distractors", str(assets_dir), "--max-distractors", "-1", "--out", str(tmp_path / "bad"),
                    "--num-images", "1", "--progress", "none")
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "distractors" in errors[0]
    assert not (tmp_path / "bad").exists()


def test_a_dataset_from_before_these_settings_resumes_with_its_own_labelling(tmp_path: Path) -> None:
    """config.json written before the asset, distractor and visibility settings existed lacks them;
    it reads as 'none of that, every visible pixel annotated', so today's defaults (which drop
    barely visible objects) are refused by name and the old labelling resumes."""
    out = tmp_path / "old"
    base = ["--out", str(out), "--resolution", "32", "--masks-only", "--progress", "none", "--no-preview"]
    old_rules = tmp_path / "old_rules.toml"
    old_rules.write_text("[objects]\nmin_visible_pixels = 1\nmin_visible_fraction = 0.0\n", encoding="utf-8")
    assert _generate(*base, "--num-images", "1", "--config", str(old_rules)).returncode == 0
    conf = json.loads((out / "config.json").read_text())
    for key in ("assets_dir", "blend_file", "placement", "real_size", "per_category", "keep_asset_materials",
                "min_visible_pixels", "min_visible_fraction"):
        del conf["generator"]["objects"][key]
    del conf["generator"]["distractors"]
    (out / "config.json").write_text(json.dumps(conf), encoding="utf-8")
    refused = _generate(*base, "--num-images", "2")
    assert refused.returncode == 2 and "objects.min_visible_fraction" in refused.stderr
    resumed = _generate(*base, "--num-images", "2", "--config", str(old_rules))
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert len(list((out / "records").glob("*.json"))) == 2
