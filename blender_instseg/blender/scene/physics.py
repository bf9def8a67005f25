"""Optional physics placement: drop the objects onto the ground with Blender's rigid body solver.

The simulation runs frame by frame from frame 1, then each object's settled world matrix is
written back onto the object and the rigid body world is removed, so the scene that is rendered
(and rasterised for amodal masks) is a plain static scene. Blender's solver is deterministic for
the same input, so the same seed still gives the same bytes.
"""

from __future__ import annotations

from typing import Literal

import bpy
from mathutils import Matrix


def _add_body(obj: bpy.types.Object, kind: Literal["ACTIVE", "PASSIVE"], shape: str) -> None:
    with bpy.context.temp_override(object=obj, active_object=obj, selected_objects=[obj]):
        bpy.ops.rigidbody.object_add(type=kind)
    rb = obj.rigid_body
    rb.collision_shape = shape
    rb.friction = 0.8
    rb.restitution = 0.1
    rb.collision_margin = 0.001


def settle(scene: bpy.types.Scene, objects: list[bpy.types.Object], ground: bpy.types.Object | None,
           frames: int, passive: list[bpy.types.Object] | None = None,
           trajectory: dict[str, list[Matrix]] | None = None) -> None:
    """Simulate ``frames`` frames and bake the result into the objects' transforms. ``passive``
    objects (categories with physics off) stay where they were placed and the others collide with them.
    ``trajectory``, when given, receives each falling object's world matrix at every simulated frame
    (by object name, frame 1 first): a sequence's "falling" frames replay it (scene/motion.py)."""
    passive = list(passive or [])
    if scene.rigidbody_world is None:
        with bpy.context.temp_override(scene=scene):
            bpy.ops.rigidbody.world_add()
    world = scene.rigidbody_world
    world.point_cache.frame_start = 1
    world.point_cache.frame_end = frames + 1
    world.substeps_per_frame = 10
    world.solver_iterations = 10
    if ground is not None:
        _add_body(ground, "PASSIVE", "BOX")
    for obj in passive:
        _add_body(obj, "PASSIVE", "MESH")
    for obj in objects:
        _add_body(obj, "ACTIVE", "CONVEX_HULL")
    for frame in range(1, frames + 2):
        scene.frame_set(frame)
        if trajectory is not None:
            depsgraph = bpy.context.evaluated_depsgraph_get()
            for obj in objects:
                trajectory.setdefault(obj.name, []).append(obj.evaluated_get(depsgraph).matrix_world.copy())
    depsgraph = bpy.context.evaluated_depsgraph_get()
    settled = [obj.evaluated_get(depsgraph).matrix_world.copy() for obj in objects]
    for obj in [*objects, *passive, *([ground] if ground is not None else [])]:
        with bpy.context.temp_override(object=obj, active_object=obj, selected_objects=[obj]):
            bpy.ops.rigidbody.object_remove()
    with bpy.context.temp_override(scene=scene):
        bpy.ops.rigidbody.world_remove()
    scene.frame_set(1)
    for obj, matrix in zip(objects, settled):
        obj.matrix_world = matrix
    bpy.context.view_layer.update()
