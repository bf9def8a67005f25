"""A tiny keyframed scene for the annotate-scene tests, built through bpy and saved as a .blend.

Ortho camera looking down at 64 x 48 px (16 px per metre), a background ground plane and three
annotated things: ``Cube`` (collection ``InstSeg/box``) sliding across, ``Ball`` (custom property
``instseg_category = "ball"``) leaving the picture at frame 8 and coming back by frame 24, and
``chair_0``, a collection instance of a two-part chair (``InstSeg/chair``) passing over the cube.
"""

from __future__ import annotations

from pathlib import Path

import bpy

W, H, ORTHO, FRAMES = 64, 48, 4.0, 24


def _cube(name: str, size: float) -> bpy.types.Object:
    mesh = bpy.data.meshes.new(name)
    s = size / 2
    verts = [(x, y, z) for x in (-s, s) for y in (-s, s) for z in (-s, s)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh.from_pydata(verts, [], faces)
    return bpy.data.objects.new(name, mesh)


def _keys(obj: bpy.types.Object, frames_locations: list[tuple[int, tuple[float, float, float]]]) -> None:
    for frame, loc in frames_locations:
        obj.location = loc
        obj.keyframe_insert("location", frame=frame)


def build_animation(path: Path, *, extra_category: str | None = None, camera: bool = True) -> Path:
    """Build the scene in a fresh factory file and save it to ``path``; returns ``path``.

    ``extra_category`` gives one more object that category name (for the bad-input test);
    ``camera=False`` leaves the scene without an active camera.
    """
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, FRAMES
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = W, H, 100
    if camera:
        cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
        cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", ORTHO, (0.0, 0.0, 5.0)
        scene.collection.objects.link(cam)
        scene.camera = cam
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    scene.collection.objects.link(sun)
    ground = bpy.data.objects.new("Ground", bpy.data.meshes.new("Ground"))
    ground.data.from_pydata([(-6, -6, -1), (6, -6, -1), (6, 6, -1), (-6, 6, -1)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(ground)
    root = bpy.data.collections.new("InstSeg")
    scene.collection.children.link(root)
    colls = {}
    for name in ("box", "ball", "chair"):
        colls[name] = bpy.data.collections.new(name)
        root.children.link(colls[name])
    cube = _cube("Cube", 0.6)
    colls["box"].objects.link(cube)
    _keys(cube, [(1, (-1.5, 0.5, 0.0)), (FRAMES, (1.5, 0.5, 0.0))])
    bpy.ops.mesh.primitive_ico_sphere_add(radius=0.35, subdivisions=2)
    ball = bpy.context.object
    ball.name = "Ball"
    ball["instseg_category"] = "ball"
    _keys(ball, [(1, (-1.0, -0.6, 0.0)), (8, (3.5, -0.6, 0.0)), (16, (3.5, -0.6, 0.0)), (FRAMES, (-1.0, -0.6, 0.0))])
    model = bpy.data.collections.new("ChairModel")  # not linked to the scene: only instanced
    for name, x in (("seat", -0.15), ("back", 0.2)):
        part = _cube(name, 0.3)
        part.location = (x, 0.0, 0.0)
        model.objects.link(part)
    chair = bpy.data.objects.new("chair_0", None)
    chair.instance_type, chair.instance_collection = "COLLECTION", model
    colls["chair"].objects.link(chair)
    _keys(chair, [(1, (1.2, 0.4, 0.3)), (FRAMES, (-1.2, 0.4, 0.3))])
    if extra_category is not None:
        odd = _cube("Odd", 0.2)
        odd["instseg_category"] = extra_category
        scene.collection.objects.link(odd)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path
