"""Dense user meshes simplified at import (objects.max_triangles, scripts/generate.py --max-triangles N).

The test writes a dense asset (an icosphere of 5120 triangles with two materials and a UV map) through
Blender's glTF exporter in a child process, as a user's scan would come, and checks: the imported mesh
ends at most at the limit and near it, keeps its material slots, per-face materials and UV map; a mesh
within the limit is left as it is; the masks of the simplified mesh are still exact (the amodal
rasteriser on it equals Cycles' Object Index pass); and the generator run records the setting and its
dataset validates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.bpy, pytest.mark.usefixtures("fresh_blender_each_test")]

import bpy  # noqa: E402,F401

from blender_instseg.blender.scene import assets, builder, meshes  # noqa: E402
from blender_instseg.core.genconfig import GeneratorConfig  # noqa: E402
from blender_instseg.generator import sources  # noqa: E402
from tests.blender.bpy_child import run_bpy_script  # noqa: E402
from tests.blender.exact_masks import assert_one_object_mask_is_exact  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DENSE = 5120  # an icosphere of 5 subdivisions

MAKE_DENSE = r"""
import sys
from pathlib import Path
import bpy

out = Path(sys.argv[1])
(out / "rocks").mkdir(parents=True, exist_ok=True)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=5, radius=0.4)
obj = bpy.context.object
for name, rgb in (("top", (0.9, 0.1, 0.1)), ("bottom", (0.1, 0.1, 0.9))):
    m = bpy.data.materials.new(name)
    if not m.use_nodes:
        m.use_nodes = True
    m.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    obj.data.materials.append(m)
for poly in obj.data.polygons:
    poly.material_index = 0 if poly.center.z > 0 else 1
if not obj.data.uv_layers:
    obj.data.uv_layers.new(name="UVMap")
bpy.ops.export_scene.gltf(filepath=str(out / "rocks" / "rock.glb"))
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add(size=0.5)
(out / "boxes").mkdir(parents=True, exist_ok=True)
bpy.ops.export_scene.gltf(filepath=str(out / "boxes" / "box.glb"))
"""


@pytest.fixture(scope="module")
def assets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dense_assets") / "assets"
    run_bpy_script(MAKE_DENSE, out.parent, str(out))
    return out


def _cfg(assets_dir: Path, max_triangles: int) -> GeneratorConfig:
    cfg = GeneratorConfig()
    sources.use_asset_folder(cfg, assets_dir)
    cfg.objects.max_triangles = max_triangles
    cfg.render.resolution = [64, 48]
    return cfg.validate()


def test_a_dense_mesh_ends_within_the_limit_with_its_materials_and_uvs(assets_dir: Path) -> None:
    user = str(assets_dir.resolve())
    light = meshes.get_shape("file:rocks/rock.glb", user_dir=user, max_triangles=1000)
    full = meshes.get_shape("file:rocks/rock.glb", user_dir=user)  # (its materials: top.001, bottom.001)
    assert light.mesh is not full.mesh  # each limit has its own cached mesh
    assert assets.triangle_count(full.mesh) == len(full.tris) == DENSE
    count = assets.triangle_count(light.mesh)
    assert 900 <= count <= 1000 and len(light.tris) == count
    assert [m.name for m in light.mesh.materials] == ["top", "bottom"] and light.own_materials
    used = {p.material_index for p in light.mesh.polygons}
    assert used == {0, 1}  # both halves keep their own material
    assert len(light.mesh.uv_layers) == len(full.mesh.uv_layers) >= 1
    # still one closed surface: the importer's split vertices (three per triangle of this flat-shaded
    # file) are welded first, else Decimate deletes whole triangles and leaves holes
    assert light.neighbours is not None
    assert np.isclose(sum(p.area for p in light.mesh.polygons), sum(p.area for p in full.mesh.polygons), rtol=0.02)
    # normalised like every mesh: centred, largest half-extent 1, its own size about the same
    assert np.isclose(np.abs(light.verts).max(), 1.0) and abs(light.size - full.size) < 0.05 * full.size
    # a mesh within the limit is left as it is
    box = meshes.get_shape("file:boxes/box.glb", user_dir=user, max_triangles=1000)
    assert assets.triangle_count(box.mesh) == 12


def test_the_simplified_mesh_masks_are_exact(assets_dir: Path) -> None:
    cfg = _cfg(assets_dir, 600)
    cfg.objects.shapes = {"file:rocks/rock.glb": "rocks"}
    cfg.categories = ["rocks"]
    cfg.objects.min_count = cfg.objects.max_count = 1
    cfg.camera.distance = [2.5, 3.5]
    built = builder.build_scene(cfg, 7, build_appearance=False)
    assert assets.triangle_count(built.objects[0].obj.data) <= 600
    assert_one_object_mask_is_exact(built, 64, 48)


def test_generate_records_the_limit_and_the_dataset_validates(assets_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate.py"), "--assets", str(assets_dir),
                           "--max-triangles", "800", "--out", str(out), "--num-images", "2", "--seed", "3",
                           "--resolution", "64", "--masks-only", "--min-objects", "3", "--max-objects", "4",
                           "--progress", "none", "--no-preview"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"file:rocks/rock.glb: simplified from {DENSE} to" in proc.stderr
    conf = json.loads((out / "config.json").read_text())
    assert conf["generator"]["objects"]["max_triangles"] == 800
    check = subprocess.run([sys.executable, "-m", "blender_instseg.core", "validate", str(out)], capture_output=True,
                           text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr
