"""The artist's .blend as the dataset spec (scripts/generate.py --blend FILE).

The test writes a .blend in a child bpy process: an ``InstSeg`` collection whose child collections
are the categories (objects with children, a child collection of parts), a distractor collection
and an ignored one, each set up with the collection custom properties an artist would set.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

from blender_instseg.blender.scene import blend_source, builder, meshes  # noqa: E402
from blender_instseg.core.genconfig import GeneratorConfig  # noqa: E402
from tests.blender.bpy_child import run_bpy_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

MAKE_BLEND = r"""
import sys
import bpy

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene

def coll(name, parent, **props):
    c = bpy.data.collections.new(name)
    parent.children.link(c)
    for k, v in props.items():
        c[k] = v
    return c

def mesh_obj(name, op, collection, material=None, **kw):
    op(**kw)
    obj = bpy.context.object
    obj.name = name
    for c in obj.users_collection:
        c.objects.unlink(obj)
    collection.objects.link(obj)
    if material:
        m = bpy.data.materials.new(material)
        obj.data.materials.append(m)
    return obj

root = coll("InstSeg", scene.collection)
chairs = coll("Chairs", root)
seat = mesh_obj("chair_a", bpy.ops.mesh.primitive_cube_add, chairs, "oak", size=0.5)
leg = mesh_obj("chair_a_leg", bpy.ops.mesh.primitive_cylinder_add, chairs, radius=0.05, depth=0.5, location=(0, 0, -0.5))
leg.parent = seat  # one chair: the seat and its leg
mesh_obj("chair_b", bpy.ops.mesh.primitive_cylinder_add, chairs, "pine", radius=0.3, depth=0.4)
mugs = coll("Mugs", root, instseg_placement="upright", instseg_real_size=True, instseg_count=[2, 2])
mug_set = coll("mug_set", mugs)
mesh_obj("cup", bpy.ops.mesh.primitive_cylinder_add, mug_set, "glaze", radius=0.1, depth=0.2)
mesh_obj("handle", bpy.ops.mesh.primitive_torus_add, mug_set, major_radius=0.06, minor_radius=0.015, location=(0.12, 0, 0))
clutter = coll("Clutter", root, instseg_role="distractor")
mesh_obj("ball", bpy.ops.mesh.primitive_uv_sphere_add, clutter, radius=0.2)
notes = coll("Notes", root, instseg_role="ignore")
mesh_obj("note", bpy.ops.mesh.primitive_plane_add, notes, size=0.3)
mesh_obj("Floor", bpy.ops.mesh.primitive_plane_add, scene.collection, size=20)  # not under InstSeg
bad = bpy.data.collections.new("Bad")  # for the role check: a wrong role under another parent
bad_parent = coll("Other", scene.collection)
coll("Broken", bad_parent, instseg_role="sometimes")
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])
"""


@pytest.fixture(scope="module")
def blend_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artist")
    path = folder / "products.blend"
    run_bpy_script(MAKE_BLEND, folder, str(path))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_collections_are_categories_and_their_contents_templates(blend_file: Path) -> None:
    builder.reset_blender()
    before = _sha(blend_file)
    spec = blend_source.scan_blend(blend_file)
    assert spec.categories == ["Chairs", "Mugs"]  # Clutter is a distractor, Notes ignored, Floor outside
    assert spec.shapes == {"blend:Chairs/chair_a": "Chairs", "blend:Chairs/chair_b": "Chairs",
                           "blend:Mugs/mug_set": "Mugs"}  # the leg belongs to chair_a
    assert spec.distractors == ["blend:Clutter/ball"]
    assert spec.per_category == {"Mugs": {"placement": "upright", "real_size": True, "count": [2, 2]}}
    assert len(bpy.data.libraries) == 0 and "Chairs" not in bpy.data.collections  # read, then let go
    cfg = GeneratorConfig()
    blend_source.use_blend(cfg, blend_file)
    cfg.validate()
    chair = meshes.get_shape("blend:Chairs/chair_a", user_dir=cfg.objects.blend_file)
    assert len(chair.mesh.polygons) > 6 and [m.name for m in chair.mesh.materials if m] == ["oak"]
    mug = meshes.get_shape("blend:Mugs/mug_set", user_dir=cfg.objects.blend_file)
    assert [m.name for m in mug.mesh.materials if m] == ["glaze"]  # cup and handle in one mesh
    built = builder.build_scene(cfg, 1, build_appearance=True)
    assert {so.shape for so in built.objects} <= set(cfg.objects.shapes)
    assert sum(so.shape == "blend:Mugs/mug_set" for so in built.objects) == 2  # instseg_count = [2, 2]
    assert _sha(blend_file) == before


def test_max_triangles_simplifies_a_template_and_keeps_its_materials(blend_file: Path) -> None:
    """A collection template (cup + handle merged) goes through the same simplification as asset files."""
    builder.reset_blender()
    before = _sha(blend_file)
    light = meshes.get_shape("blend:Mugs/mug_set", user_dir=str(blend_file), max_triangles=300)
    full = meshes.get_shape("blend:Mugs/mug_set", user_dir=str(blend_file))  # (its material: glaze.001)
    assert len(full.tris) > 1000 and 250 <= len(light.tris) <= 300
    assert [m.name for m in light.mesh.materials if m] == ["glaze"]
    assert _sha(blend_file) == before
    builder.reset_blender()


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "generate.py"), *args], capture_output=True,
                          text=True, timeout=300)


def test_generate_from_the_blend_leaves_it_unchanged_and_validates(blend_file: Path, tmp_path: Path) -> None:
    before = _sha(blend_file)
    out = tmp_path / "ds"
    proc = _generate("--blend", str(blend_file), "--out", str(out), "--num-images", "2", "--resolution", "64",
                     "--masks-only", "--min-objects", "3", "--max-objects", "5", "--progress", "none", "--no-preview")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _sha(blend_file) == before
    gt = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in gt["categories"]] == ["Chairs", "Mugs"] and gt["annotations"]
    check = subprocess.run([sys.executable, "-m", "blender_instseg.core", "validate", str(out)], capture_output=True,
                           text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
    conf = json.loads((out / "config.json").read_text())["generator"]
    assert conf["distractors"]["shapes"] == ["blend:Clutter/ball"] and conf["distractors"]["max_count"] == 3


@pytest.mark.parametrize("case", ["missing", "no_parent", "bad_role", "two_sources"])
def test_bad_blend_input_is_one_line_and_writes_nothing(blend_file: Path, tmp_path: Path, case: str) -> None:
    args = {"missing": ["--blend", str(tmp_path / "nope.blend")],
            "no_parent": ["--blend", str(blend_file), "--blend-collection", "Nope"],
            "bad_role": ["--blend", str(blend_file), "--blend-collection", "Other"],
            "two_sources": ["--blend", str(blend_file), "--assets", str(blend_file.parent)]}[case]
    fragment = {"missing": "--blend file not found", "no_parent": "products.blend: no collection named 'Nope'",
                "bad_role": "instseg_role must be one of target, distractor, ignore",
                "two_sources": "--assets and --blend are two sources of the objects"}[case]
    out = tmp_path / "out"
    proc = _generate(*args, "--out", str(out), "--num-images", "1", "--resolution", "32", "--masks-only",
                     "--progress", "none")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and fragment in errors[0], proc.stderr[-1500:]
    assert not out.exists()
