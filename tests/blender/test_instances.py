"""Every instance its own id (blender/scene/instances.py), checked on real renders.

A Geometry-Nodes scatter, a particle system and collection instances all render with their
instancer's pass index in Cycles' Object Index pass. After ``realize_instances`` each instance has
stand-in objects of its own, so it gets its own id; the masks are compared pixel for pixel with an
independent ray cast of the *original* evaluated scene (``Scene.ray_cast`` through each pixel
centre, the hit instance told apart by its world matrix).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

from blender_instseg.blender.render import cycles as cy  # noqa: E402
from blender_instseg.blender.scene import instances  # noqa: E402

W, H, ORTHO = 64, 48, 4.0


def _empty_scene() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", ORTHO, (0.0, 0.0, 5.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
    return scene


def _cube(name: str, size: float, location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    bpy.ops.mesh.primitive_cube_add(size=size, location=location)
    obj = bpy.context.object
    obj.name = name
    return obj


def _gn_scatter(template: bpy.types.Object) -> bpy.types.Object:
    """A plane whose Geometry Nodes put an instance of ``template`` on each of 5 x 2 grid points."""
    bpy.ops.mesh.primitive_plane_add(size=1.0)
    scatter = bpy.context.object
    scatter.name = "Scatter"
    tree = bpy.data.node_groups.new("scatter", "GeometryNodeTree")
    tree.interface.new_socket(name="Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket(name="Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    out = nodes.new("NodeGroupOutput")
    grid = nodes.new("GeometryNodeMeshGrid")
    grid.inputs["Size X"].default_value, grid.inputs["Size Y"].default_value = 3.0, 2.0
    grid.inputs["Vertices X"].default_value, grid.inputs["Vertices Y"].default_value = 5, 2
    points = nodes.new("GeometryNodeMeshToPoints")
    place = nodes.new("GeometryNodeInstanceOnPoints")
    info = nodes.new("GeometryNodeObjectInfo")
    info.inputs["Object"].default_value = template
    links.new(grid.outputs["Mesh"], points.inputs["Mesh"])
    links.new(points.outputs["Points"], place.inputs["Points"])
    links.new(info.outputs["Geometry"], place.inputs["Instance"])
    links.new(place.outputs["Instances"], out.inputs["Geometry"])
    scatter.modifiers.new("scatter", "NODES").node_group = tree
    return scatter


def _index_render() -> np.ndarray:
    cy.configure(cy.RenderSettings(W, H, 1, True, 0, False))
    return cy.index_map(cy.render())


def _ray_cast_instances(scene: bpy.types.Scene) -> np.ndarray:
    """(H, W) world translation (x, y, z) of the instance hit through each pixel centre (NaN: none),
    from the evaluated scene as the user built it, without any stand-in."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    hit_at = np.full((H, W, 3), np.nan)
    pitch = ORTHO / W
    for py in range(H):
        for px in range(W):
            origin = Vector((-ORTHO / 2 + (px + 0.5) * pitch, H * pitch / 2 - (py + 0.5) * pitch, 5.0))
            hit, _, _, _, _, matrix = scene.ray_cast(depsgraph, origin, Vector((0.0, 0.0, -1.0)))
            if hit:
                hit_at[py, px] = tuple(matrix.translation)
    return hit_at


def test_a_geometry_nodes_scatter_gives_ten_exact_masks() -> None:
    scene = _empty_scene()
    rock = _cube("Rock", 0.3)
    rock.hide_render = rock.hide_viewport = True  # the template itself is not in the picture
    scatter = _gn_scatter(rock)
    scatter.pass_index = 3
    bpy.context.view_layer.update()
    assert set(np.unique(_index_render()).tolist()) == {0, 3}  # the problem: one id for all ten
    truth = _ray_cast_instances(scene)

    realized = instances.realize_instances(scene, bpy.context.view_layer)
    try:
        assert [(g.instancer, len(g.objects)) for g in realized.groups] == [("Scatter", 1)] * 10
        assert len(realized.meshes) == 1  # ten instances of one geometry: one copy
        for k, group in enumerate(realized.groups, start=1):
            for obj in group.objects:
                obj.pass_index = k
        ids = _index_render()
        assert set(np.unique(ids).tolist()) == set(range(11))
        for k, group in enumerate(realized.groups, start=1):
            where = np.array(group.objects[0].matrix_world.translation)
            expected = np.all(np.isclose(truth, where, atol=1e-5), axis=2)
            assert expected.sum() > 10
            assert np.array_equal(ids == k, expected), (k, int((ids == k).sum()), int(expected.sum()))
    finally:
        realized.undo()
    assert sorted(o.name for o in bpy.data.objects) == ["Cam", "Rock", "Scatter"] and not scatter.hide_render
    assert set(np.unique(_index_render()).tolist()) == {0, 3}  # the user's scene renders as before


def test_collection_instances_are_one_instance_each_and_particles_one_per_particle() -> None:
    scene = _empty_scene()
    chair = bpy.data.collections.new("Chair")  # two parts: one chair
    for name, x in (("seat", -0.1), ("back", 0.1)):
        part = bpy.data.objects.new(name, _cube(f"{name}_src", 0.2).data)
        part.location = (x, 0.0, 0.0)
        chair.objects.link(part)
    for obj in [o for o in scene.objects if o.name.endswith("_src")]:
        bpy.data.objects.remove(obj)
    for i, x in enumerate((-1.0, 1.0)):
        empty = bpy.data.objects.new(f"chair_{i}", None)
        empty.instance_type, empty.instance_collection, empty.location = "COLLECTION", chair, (x, 0.5, 0.0)
        scene.collection.objects.link(empty)
    emitter = _cube("Emitter", 0.5, (0.0, -1.0, 0.0))
    emitter.modifiers.new("p", "PARTICLE_SYSTEM")
    settings = emitter.particle_systems[0].settings
    settings.type, settings.count, settings.hair_length = "HAIR", 4, 0.2
    settings.render_type, settings.instance_object = "OBJECT", _cube("Pebble", 0.1, (5.0, 5.0, 0.0))
    bpy.data.objects["Pebble"].hide_render = True
    bpy.context.view_layer.update()
    meshes_before = len(bpy.data.meshes)
    realized = instances.realize_instances(scene, bpy.context.view_layer)
    try:
        groups = {(g.instancer, g.index): sorted(o.data.name for o in g.objects) for g in realized.groups}
        assert len([k for k in groups if k[0].startswith("chair_")]) == 2
        assert all(len(groups[(f"chair_{i}", 0)]) == 2 for i in range(2))  # seat and back together
        pebbles = [k for k in groups if k[0] == "Emitter" and k[1] >= 0]
        assert len(pebbles) == 4  # one per particle
        assert ("Emitter", -1) in groups  # the emitter's own cube renders too (Show Emitter)
        assert {o.name for o in realized.hidden} == {"chair_0", "chair_1", "Emitter"}
        for k, group in enumerate(realized.groups, start=1):
            for obj in group.objects:
                obj.pass_index = k
        ids = _index_render()
        seen = set(np.unique(ids).tolist()) - {0}
        assert seen <= set(range(1, len(realized.groups) + 1))
        by_name = {(g.instancer, g.index): k for k, g in enumerate(realized.groups, start=1)}
        # the two chairs and the emitter, each seen with its own id (the pebbles are too small to see)
        assert {by_name[("chair_0", 0)], by_name[("chair_1", 0)], by_name[("Emitter", -1)]} <= seen
    finally:
        realized.undo()
    assert len(bpy.data.meshes) == meshes_before
    assert not any(bpy.data.objects[n].hide_render for n in ("chair_0", "chair_1", "Emitter"))
