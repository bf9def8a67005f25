"""annotate-scene's label render: the opaque override where it is exact, the real materials where not.

The black-emission override (``render.cycles.label_material``) makes the label render cheap, but it
turns every surface opaque and drops shader displacement. ``transparency.label_override_blocker``
decides per scene; here each kind of material it must catch, and a scene where a see-through veil in
front of a cube must not hide the cube in the id map (while an opaque veil does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

from blender_instseg.blender.scene.transparency import label_override_blocker  # noqa: E402
from blender_instseg.core.formats import dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _material(name: str) -> tuple[bpy.types.Material, bpy.types.ShaderNodeTree]:
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5.0
        mat.use_nodes = True
    return mat, mat.node_tree


def _principled(tree: bpy.types.ShaderNodeTree) -> bpy.types.Node:
    return next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")


def _output(tree: bpy.types.ShaderNodeTree) -> bpy.types.Node:
    return next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL")


def test_opaque_materials_allow_the_override() -> None:
    plain, tree = _material("plain")
    _principled(tree).inputs["Base Color"].default_value = (0.2, 0.5, 0.1, 1.0)
    glass, tree = _material("glass")  # glass refracts: alpha 1, written at its surface either way
    _principled(tree).inputs["Transmission Weight"].default_value = 1.0
    bump, tree = _material("bump")  # bump only shades; the surface stays where it is
    disp = tree.nodes.new("ShaderNodeDisplacement")
    tree.links.new(disp.outputs[0], _output(tree).inputs["Displacement"])
    assert label_override_blocker([plain, glass, bump]) == ""


def _alpha_half() -> bpy.types.Material:
    mat, tree = _material("alpha_half")
    _principled(tree).inputs["Alpha"].default_value = 0.5
    return mat


def _alpha_linked() -> bpy.types.Material:
    mat, tree = _material("alpha_linked")
    noise = tree.nodes.new("ShaderNodeTexNoise")
    tree.links.new(noise.outputs["Fac"], _principled(tree).inputs["Alpha"])
    return mat


def _transparent_mix() -> bpy.types.Material:
    mat, tree = _material("transparent_mix")
    mix = tree.nodes.new("ShaderNodeMixShader")
    clear = tree.nodes.new("ShaderNodeBsdfTransparent")
    tree.links.new(_principled(tree).outputs[0], mix.inputs[1])
    tree.links.new(clear.outputs[0], mix.inputs[2])
    tree.links.new(mix.outputs[0], _output(tree).inputs["Surface"])
    return mat


def _holdout() -> bpy.types.Material:
    mat, tree = _material("holdout")
    tree.links.new(tree.nodes.new("ShaderNodeHoldout").outputs[0], _output(tree).inputs["Surface"])
    return mat


def _volume_only() -> bpy.types.Material:
    mat, tree = _material("volume_only")
    tree.nodes.remove(_principled(tree))
    tree.links.new(tree.nodes.new("ShaderNodeVolumePrincipled").outputs[0], _output(tree).inputs["Volume"])
    return mat


def _displaced() -> bpy.types.Material:
    mat, tree = _material("displaced")
    disp = tree.nodes.new("ShaderNodeDisplacement")
    tree.links.new(disp.outputs[0], _output(tree).inputs["Displacement"])
    mat.displacement_method = "DISPLACEMENT"
    return mat


def _transparent_in_group() -> bpy.types.Material:
    mat, tree = _material("grouped")
    group = bpy.data.node_groups.new("see_through_group", "ShaderNodeTree")
    group.interface.new_socket("Shader", in_out="OUTPUT", socket_type="NodeSocketShader")
    out = group.nodes.new("NodeGroupOutput")
    group.links.new(group.nodes.new("ShaderNodeBsdfTransparent").outputs[0], out.inputs[0])
    node = tree.nodes.new("ShaderNodeGroup")
    node.node_tree = group
    tree.links.new(node.outputs[0], _output(tree).inputs["Surface"])
    return mat


@pytest.mark.parametrize("make, why", [
    (_alpha_half, "Alpha"), (_alpha_linked, "Alpha"), (_transparent_mix, "Transparent"), (_holdout, "Holdout"),
    (_volume_only, "no surface shader"), (_displaced, "displaces"), (_transparent_in_group, "Transparent")])
def test_see_through_or_displacing_materials_keep_the_real_materials(make, why: str) -> None:
    opaque, _ = _material("opaque")
    mat = make()
    blocker = label_override_blocker([opaque, mat])
    assert mat.name in blocker and why in blocker, blocker


def _veil_scene(path: Path, alpha: float) -> Path:
    """Ortho camera over a cube (InstSeg/box) with a plane (InstSeg/veil) of material Alpha ``alpha`` above it."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start = scene.frame_end = 1
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 48, 48, 100
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", 3.0, (0.0, 0.0, 5.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    root = bpy.data.collections.new("InstSeg")
    scene.collection.children.link(root)
    for name, size, z in (("box", 1.0, 0.0), ("veil", 2.0, 1.0)):
        coll = bpy.data.collections.new(name)
        root.children.link(coll)
        mesh = bpy.data.meshes.new(name)
        s = size / 2
        mesh.from_pydata([(-s, -s, z), (s, -s, z), (s, s, z), (-s, s, z)], [], [(0, 1, 2, 3)])
        obj = bpy.data.objects.new(name, mesh)
        coll.objects.link(obj)
        if name == "veil":
            mat, tree = _material("veil")
            _principled(tree).inputs["Alpha"].default_value = alpha
            mesh.materials.append(mat)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_see_through_veil_never_hides_what_is_behind_it_in_the_labels(alpha: float, tmp_path: Path) -> None:
    blend = _veil_scene(tmp_path / "veil.blend", alpha)
    out = tmp_path / "ds"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "annotate_scene.py"), "--blend", str(blend),
                           "--out", str(out), "--masks-only", "--progress", "none", "--device", "cpu",
                           "--threads", "1"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    record = dataset.read_record(dataset.record_path(out, 0))
    areas = {a["object_name"]: a["area"] for a in record["annotations"]}
    cube = (48 / 3.0) ** 2  # the cube's 1 m square at 16 px per metre
    if alpha == 0.0:
        assert areas.get("box") == cube and "veil" not in areas, areas  # seen through the veil, which is not seen
    else:
        assert "box" not in areas and areas.get("veil") == 4 * cube, areas  # the opaque veil covers it
