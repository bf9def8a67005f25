"""Build one procedural scene from (config, seed): ground, objects, materials, lights, camera, world.

Randomness comes from independent numpy streams spawned from the image seed (layout, materials,
lights, camera, world, resample, distractors; the looks: hdri, backplate, textures), so switching
a feature off (e.g. materials in masks-only mode, or the looks) never changes the draws of
another, and the same seed always gives the same scene and labels.

A *variant* of a scene (hard-scene mining, docs/loop.md) is built with ``parent_seed``: every
draw of the parent (object count, shapes, scales, rotations, positions, materials, lights, camera,
world) is replayed from the parent's streams, then nudged by draws from the variant's own streams
(``seed``), by the amounts in ``Perturbation``. So a variant keeps the parent's recipe and is as
deterministic as any scene.

Instance ids are ``pass_index`` 1..N on the objects, in creation order; the ground and the world
are background (0). Categories come from the config's label map, stored on the object as the
custom properties ``instseg_category_id`` / ``instseg_shape``, never derived from names.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Quaternion, Vector

from ...core.genconfig import GeneratorConfig
from . import backplate, meshes, textures, world
from .materials import MaterialSpec, WorldSpec, clay_world, sample_lights
from .transparency import TransparencySpec

log = logging.getLogger(__name__)

# A stream added at the end leaves the others' draws unchanged (SeedSequence children are by index).
STREAMS = ("layout", "materials", "lights", "camera", "world", "resample", "distractors", "hdri", "backplate",
           "textures", "lens", "sensor", "transparency", "motion", "looks")


@dataclass(frozen=True)
class Perturbation:
    """How far a variant strays from its parent scene: small enough to keep what made it hard.

    Positions move within a disc around the parent's (still non-overlapping); rotations turn about
    the vertical axis only, which keeps each object's footprint and resting height; angles are
    +- the value, relative amounts scale by 1 +- the value; results stay inside the config's ranges.
    """

    position: float = 0.3  # metres: radius of the disc around the parent position
    yaw_deg: float = 30.0
    camera_azimuth_deg: float = 25.0
    camera_elevation_deg: float = 8.0
    camera_distance: float = 0.1  # relative
    camera_target: float = 0.15  # metres of extra look-at offset per axis
    light_azimuth_deg: float = 40.0
    light_energy: float = 0.3  # relative
    world_strength: float = 0.2  # relative
    hue: float = 0.04  # of the colour wheel
    saturation_value: float = 0.15  # relative
    roughness: float = 0.1


PERTURBATION = Perturbation()


@dataclass
class SceneObject:
    instance_id: int
    shape: str
    category_id: int
    obj: bpy.types.Object
    footprint: float  # radius of the object's xy footprint, metres (for non-overlapping placement)
    shape_mesh: meshes.ShapeMesh  # its shared mesh with the local vertices/triangles (amodal masks)


@dataclass
class BuiltScene:
    seed: int
    objects: list[SceneObject]
    camera: bpy.types.Object
    rngs: dict[str, np.random.Generator]
    params: dict = field(default_factory=dict)  # a summary of the scene parameters, stored in the record
    backplate: backplate.BackplateSpec | None = None  # the photo the render is composited over
    # build_scene(record_fall=True): each falling object's world matrix per simulated frame, by object name
    fall: dict[str, list[Any]] = field(default_factory=dict)

    def by_id(self) -> dict[int, SceneObject]:
        return {o.instance_id: o for o in self.objects}


def make_rngs(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
    return {name: np.random.Generator(np.random.PCG64(ss)) for name, ss in zip(STREAMS, children)}


def reset_blender() -> None:
    """Start from an empty factory scene (once per process); cached shape meshes are rebuilt on demand."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    meshes.clear_cache()


def clear_scene() -> None:
    """Remove everything the previous image made, keeping the shared shape meshes (fake users) and
    parking their pooled objects for the next image (``meshes.release_objects``)."""
    meshes.release_objects()
    for obj in list(bpy.data.objects):
        if not obj.get(meshes.POOL_PROP):  # parked for the next images
            bpy.data.objects.remove(obj, do_unlink=True)
    collections: tuple[Any, ...] = (bpy.data.materials, bpy.data.lights, bpy.data.cameras, bpy.data.worlds)
    for coll in collections:
        for item in list(coll):
            if not item.use_fake_user:  # kept: e.g. the label-render override material
                coll.remove(item)
    for mesh in list(bpy.data.meshes):
        if not mesh.use_fake_user and mesh.users == 0:
            bpy.data.meshes.remove(mesh)
    for action in list(bpy.data.actions):  # the motion keys of scene/lens.py (their objects are gone)
        if not action.use_fake_user and action.users == 0:
            bpy.data.actions.remove(action)
    scene = bpy.context.scene
    if scene.rigidbody_world is not None:
        bpy.ops.rigidbody.world_remove()


def _random_rotation(rng: np.random.Generator) -> Quaternion:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return Quaternion((float(q[0]), float(q[1]), float(q[2]), float(q[3])))


def _counted_picks(cfg: GeneratorConfig, rng: np.random.Generator) -> list[str] | None:
    """The shapes of one scene when some categories have their own ``count = [lo, hi]``
    (objects.per_category, or a .blend collection's instseg_count): each of those gets its own
    number of objects, picked among its own templates, and objects.min_count..max_count covers the
    other categories. None when no category has a count: the caller then draws shape by shape as
    every dataset so far was made."""
    oc = cfg.objects
    shapes = sorted(oc.shapes)
    counted = {cat: over["count"] for cat, over in oc.per_category.items() if "count" in over}
    if not counted:
        return None
    picks: list[str] = []
    for cat in cfg.categories:
        if cat in counted:
            lo, hi = counted[cat]
            pool = [s for s in shapes if oc.shapes[s] == cat]
            picks += [pool[int(rng.integers(0, len(pool)))] for _ in range(int(rng.integers(lo, hi + 1)))]
    rest = [s for s in shapes if oc.shapes[s] not in counted]
    if rest:
        picks += [rest[int(rng.integers(0, len(rest)))] for _ in range(int(rng.integers(oc.min_count, oc.max_count + 1)))]
    return picks


def _random_yaw(rng: np.random.Generator) -> Quaternion:
    """A turn about the vertical axis only: the asset keeps the up axis it was modelled with."""
    return Quaternion((0.0, 0.0, 1.0), float(rng.uniform(0.0, 2.0 * math.pi)))


def _ground(size: float, collection: bpy.types.Collection) -> bpy.types.Object:
    """The ground plane (background: pass index 0), from its pool (``meshes.ground_shape``)."""
    obj = meshes.take_object(meshes.ground_shape(size), "ground", collection)
    obj.location = (0.0, 0.0, 0.0)
    return obj


def _place_xy(rng: np.random.Generator, radius: float, footprint: float, others: list[tuple[float, float, float]],
              tries: int = 30, centre: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """Rejection-sample a point in a disc (around ``centre``) whose footprint circle avoids the others.

    When no try is free, the try with the largest clearance wins, so crowded scenes overlap as
    little as possible instead of swallowing small objects inside big ones.
    """
    best, best_clear = (0.0, 0.0), -math.inf
    for _ in range(tries):
        r = radius * math.sqrt(float(rng.uniform()))
        a = float(rng.uniform(0, 2 * math.pi))
        x, y = centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)
        clear = min((math.hypot(x - ox, y - oy) - footprint - of for ox, oy, of in others), default=math.inf)
        if clear >= 0:
            return x, y
        if clear > best_clear:
            best, best_clear = (x, y), clear
    return best


def build_scene(cfg: GeneratorConfig, seed: int, *, build_appearance: bool = True,
                assets_dir: Path | None = None, parent_seed: int | None = None,
                perturb: Perturbation = PERTURBATION, record_fall: bool = False) -> BuiltScene:
    """Clear the current scene and build a new one; ``build_appearance=False`` skips materials/lights/world nodes.

    With ``parent_seed`` the scene is a variant of that seed's scene, nudged by draws from ``seed``.
    ``record_fall`` keeps the physics drop frame by frame (``BuiltScene.fall``) for a sequence.
    """
    clear_scene()
    scene = bpy.context.scene
    rngs = make_rngs(seed)
    variant = rngs if parent_seed is not None else None
    base = make_rngs(parent_seed) if parent_seed is not None else rngs
    layout, mats, cam_rng = base["layout"], base["materials"], base["camera"]
    oc = cfg.objects
    p = perturb
    # looks.plain_probability: this scene in the default look. Its own stream, and the look parts
    # below draw as always, so nothing else changes (render_image reads params["plain_look"] for
    # the lens and sensor)
    plain = float(base["looks"].uniform()) < cfg.looks.plain_probability
    if plain:
        cfg = cfg.plain_look()

    world_spec = WorldSpec.sample(base["world"], cfg.world, cfg.materials)
    light_specs = sample_lights(base["lights"], cfg.lights)
    if variant is not None:
        world_spec = world_spec.perturbed(variant["world"], cfg.world, cfg.materials, p.world_strength, p.hue,
                                          p.saturation_value, p.roughness)
        light_specs = [spec.perturbed(variant["lights"], p.light_azimuth_deg, p.light_energy) for spec in light_specs]

    collection = scene.collection
    if cfg.world.ground:
        ground = _ground(cfg.world.ground_size, collection)
        if build_appearance:
            ground.material_slots[0].link = "OBJECT"
            ground.material_slots[0].material = world_spec.ground.build("ground")

    shapes = sorted(oc.shapes)
    picks = _counted_picks(cfg, layout)  # None: no per-category counts, the draws of every dataset so far
    count = len(picks) if picks is not None else int(layout.integers(oc.min_count, oc.max_count + 1))
    # shapes, sizes and rotations first: the disc grows with the objects' total footprint (packing
    # density <= ~50 %), so crowded scenes spread out instead of nesting objects inside each other
    drafts = []
    prev_shape: str | None = None
    for i in range(count):
        if picks is None:
            dup = prev_shape is not None and float(layout.uniform()) < oc.linked_duplicates
            shape = prev_shape if dup and prev_shape is not None else shapes[int(layout.integers(0, len(shapes)))]
        else:
            dup, shape = False, picks[i]
        sm = meshes.get_shape(shape, assets_dir, cfg.source_of(shape, oc.assets_dir), oc.max_triangles)
        scale = float(layout.uniform(oc.scale[0], oc.scale[1]))  # drawn either way: streams stay aligned
        if cfg.real_size_of(shape):
            scale = sm.size
        rot = _random_rotation(layout) if cfg.placement_of(shape) == "free" else _random_yaw(layout)
        rotated = (np.asarray(rot.to_matrix(), np.float64) @ sm.verts.T).T * scale
        footprint = float(np.linalg.norm(rotated[:, :2], axis=1).max())
        drafts.append((dup, shape, sm, scale, rot, rotated, footprint))
        prev_shape = shape
    radius = max(oc.scatter_radius, math.sqrt(2.0 * sum(d[6] ** 2 for d in drafts)))
    placed: list[tuple[float, float, float]] = []
    parent_placed: list[tuple[float, float, float]] = []  # the parent's own layout (its draws depend on it)
    objects: list[SceneObject] = []
    prev_mat: bpy.types.Material | None = None
    see_through = {"glass": 0, "alpha_cut": 0}
    for k, (dup, shape, sm, scale, rot, rotated, footprint) in enumerate(drafts, start=1):
        x, y = _place_xy(layout, radius, footprint, parent_placed)
        lift = float(layout.uniform(oc.float_height[0], oc.float_height[1]))
        if cfg.simulates():  # drawn for every object when anything falls: streams stay aligned
            drop = float(layout.uniform(cfg.physics.drop_height[0], cfg.physics.drop_height[1]))
            lift += drop if cfg.physics_of(shape) else 0.0
        z = -float(rotated[:, 2].min()) + lift + 1e-4  # a turn about z keeps the lowest point: valid for variants
        parent_placed.append((x, y, footprint))
        mat_spec = MaterialSpec.sample(mats, cfg.materials)  # drawn even when not built: streams stay aligned
        clear = TransparencySpec.sample(base["transparency"], cfg.materials)  # its own stream, drawn for every object
        if variant is not None:
            vl = variant["layout"]
            rot = Quaternion((0.0, 0.0, 1.0), math.radians(p.yaw_deg) * float(vl.uniform(-1.0, 1.0))) @ rot
            x, y = _place_xy(vl, p.position, footprint, placed, centre=(x, y))
            mat_spec = mat_spec.perturbed(variant["materials"], cfg.materials, p.hue, p.saturation_value,
                                          p.roughness)
        placed.append((x, y, footprint))

        obj = meshes.take_object(sm, f"inst_{k:04d}_{shape.replace(':', '_')}", collection)
        obj.rotation_mode = "QUATERNION"
        obj.rotation_quaternion = rot
        obj.scale = (scale, scale, scale)
        obj.location = (x, y, z)
        obj.pass_index = k
        obj["instseg_instance_id"] = k
        obj["instseg_category_id"] = cfg.category_id(shape)
        obj["instseg_shape"] = shape
        if build_appearance and not (sm.own_materials and oc.keep_asset_materials):
            mat = prev_mat if dup and prev_mat is not None else clear.dress(mat_spec.build(f"mat_{k:04d}"))
            if clear.kind and not (dup and prev_mat is not None):
                see_through[clear.kind] += 1
            for slot in obj.material_slots:  # every slot: an asset may have several
                slot.link = "OBJECT"
                slot.material = mat
            prev_mat = mat
        objects.append(SceneObject(k, shape, cfg.category_id(shape), obj, footprint, sm))

    fall: dict[str, list[Any]] = {}
    distractors = _add_distractors(cfg, base["distractors"], collection, placed, radius, assets_dir, build_appearance)

    if cfg.simulates() and objects:
        from .physics import settle

        assert scene is not None
        falling = [o.obj for o in objects if cfg.physics_of(o.shape)]
        standing = [o.obj for o in objects if not cfg.physics_of(o.shape)]  # obstacles the others land on
        falling += distractors if cfg.physics.enabled else []
        standing += [] if cfg.physics.enabled else distractors
        settle(scene, falling, ground if cfg.world.ground else None, cfg.physics.frames, passive=standing,
               trajectory=fall if record_fall else None)

    looks: dict[str, Any] = {}
    if build_appearance:
        hdri = world.sample_hdri(base["hdri"], cfg.world)
        scene.world = world.build_hdri_world(hdri, cfg.world.hdri_dir) if hdri else world_spec.build("world")
        looks = textures.apply(cfg.textures, base["textures"], ground if cfg.world.ground else None,
                               [o.obj for o in objects], distractors)
        if hdri:
            looks["hdri"] = hdri.file
        target0 = Vector((0.0, 0.0, 0.0))
        for i, spec in enumerate(light_specs):
            collection.objects.link(spec.build(f"light_{i}", target0))
    else:
        clay = clay_world()
        if scene.world != clay:  # (assigning it again would tag the scene)
            scene.world = clay
    camera = _camera(cfg, cam_rng, [o.obj for o in objects], variant["camera"] if variant is not None else None,
                     perturb)
    collection.objects.link(camera)
    scene.camera = camera
    plate = backplate.sample_backplate(base["backplate"], cfg, camera) if build_appearance else None
    if plate is not None:
        backplate.catch_shadows(ground)
        looks["backplate"] = plate.file
    bpy.context.view_layer.update()
    params = {
        "num_objects": count,
        "camera": {k: round(v, 6) if isinstance(v, float) else v for k, v in camera["instseg_params"].to_dict().items()},
        "lights": [spec.kind for spec in light_specs],
        "world_gradient": world_spec.gradient,
        "physics": cfg.simulates(),
    }
    if distractors:
        params["distractors"] = len(distractors)
    if any(see_through.values()):
        params["transparency"] = see_through
    if parent_seed is not None:
        params["parent_seed"] = int(parent_seed)
    if plain:
        params["plain_look"] = True
    params.update(looks)
    return BuiltScene(seed=seed, objects=objects, camera=camera, rngs=rngs, params=params, backplate=plate, fall=fall)


def _add_distractors(cfg: GeneratorConfig, rng: np.random.Generator, collection: Any,
                     placed: list[tuple[float, float, float]], radius: float, assets_dir: Path | None,
                     build_appearance: bool) -> list[bpy.types.Object]:
    """Distractors: placed in the same disc, clear of the objects, with pass index 0 so the Object
    Index pass sees background where they are (they occlude, they are never annotated). All their
    draws come from their own stream, so a config without them builds the same scenes as before."""
    d = cfg.distractors
    if d.max_count == 0 or not d.shapes:
        return []
    out = []
    for k in range(int(rng.integers(d.min_count, d.max_count + 1))):
        shape = d.shapes[int(rng.integers(0, len(d.shapes)))]
        sm = meshes.get_shape(shape, assets_dir, cfg.source_of(shape, d.assets_dir), cfg.objects.max_triangles)
        scale = float(rng.uniform(d.scale[0], d.scale[1]))
        rot = _random_rotation(rng) if d.placement == "free" else _random_yaw(rng)
        rotated = (np.asarray(rot.to_matrix(), np.float64) @ sm.verts.T).T * scale
        footprint = float(np.linalg.norm(rotated[:, :2], axis=1).max())
        x, y = _place_xy(rng, radius, footprint, placed)
        lift = float(rng.uniform(cfg.physics.drop_height[0], cfg.physics.drop_height[1])) if cfg.physics.enabled else 0.0
        placed.append((x, y, footprint))
        mat_spec = MaterialSpec.sample(rng, cfg.materials)
        obj = meshes.take_object(sm, f"distractor_{k + 1:03d}_{shape.replace(':', '_')}", collection)
        obj.rotation_mode = "QUATERNION"
        obj.rotation_quaternion = rot
        obj.scale = (scale, scale, scale)
        obj.location = (x, y, -float(rotated[:, 2].min()) + lift + 1e-4)
        obj.pass_index = 0
        obj["instseg_distractor"] = True
        if build_appearance and not (sm.own_materials and d.keep_asset_materials):
            mat = mat_spec.build(f"distractor_mat_{k + 1:03d}")
            for slot in obj.material_slots:
                slot.link = "OBJECT"
                slot.material = mat
        out.append(obj)
    return out


def _camera(cfg: GeneratorConfig, rng: np.random.Generator, objs: list[bpy.types.Object],
            variant_rng: np.random.Generator | None = None, perturb: Perturbation = PERTURBATION) -> bpy.types.Object:
    """Aim a camera at the objects; with ``variant_rng`` the parent's draws (from ``rng``) are nudged."""
    cc = cfg.camera
    if objs:
        # matrix_world is stale until a depsgraph update; location is current (no parents)
        centre = sum((o.location.copy() for o in objs), Vector()) / len(objs)
    else:
        centre = Vector((0.0, 0.0, 0.0))
    jitter = Vector(tuple(float(v) for v in rng.uniform(-cc.jitter, cc.jitter, size=3)))
    target = centre + jitter
    target.z = max(target.z, 0.0)
    az = float(rng.uniform(0, 2 * math.pi))
    el = math.radians(float(rng.uniform(cc.elevation[0], cc.elevation[1])))
    dist = float(rng.uniform(cc.distance[0], cc.distance[1]))
    lens = float(rng.uniform(cc.focal_length[0], cc.focal_length[1]))
    if variant_rng is not None:
        p = perturb
        d = variant_rng.uniform(-1.0, 1.0, size=6)
        az += math.radians(p.camera_azimuth_deg) * float(d[0])
        el = min(max(el + math.radians(p.camera_elevation_deg) * float(d[1]), math.radians(cc.elevation[0])),
                 math.radians(cc.elevation[1]))
        dist = min(max(dist * (1.0 + p.camera_distance * float(d[2])), cc.distance[0]), cc.distance[1])
        target += Vector(tuple(p.camera_target * float(v) for v in d[3:6]))
        target.z = max(target.z, 0.0)
    if cc.fit_objects and objs:
        # the sensor width spans the longer image side (sensor_fit AUTO); fit centres on the shorter one
        w, h = cfg.render.resolution
        half_fov = math.atan(18.0 * min(w, h) / max(w, h) / lens)
        reach = max((o.location - target).length for o in objs)
        dist = max(dist, reach / math.sin(half_fov))
    data = bpy.data.cameras.new("camera")
    data.lens = lens
    data.sensor_width = 36.0
    data.sensor_fit = "AUTO"
    data.clip_start = 0.05
    data.clip_end = 1000.0
    cam = bpy.data.objects.new("camera", data)
    cam.location = target + Vector((dist * math.cos(el) * math.cos(az), dist * math.cos(el) * math.sin(az), dist * math.sin(el)))
    cam.rotation_euler = (target - cam.location).to_track_quat("-Z", "Y").to_euler()
    cam["instseg_params"] = {"azimuth_deg": math.degrees(az), "elevation_deg": math.degrees(el), "distance": dist,
                             "focal_length": lens, "target": [round(float(target[i]), 6) for i in range(3)]}
    return cam


def move_object(so: SceneObject, scene_objects: list[SceneObject], cfg: GeneratorConfig, rng: np.random.Generator,
                camera: bpy.types.Object) -> None:
    """Re-place a hidden object where the camera sees the ground: a random point of the central frame area.

    The point is where a camera ray through a random spot in the middle 60 % of the frame meets
    the plane at the object's current height; being drawn from the resample stream, the move is
    as deterministic as the rest of the scene.
    """
    scene = bpy.context.scene
    frame = camera.data.view_frame(scene=scene)  # camera-space corners: top-right, bottom-right, bottom-left, top-left
    u, v = (float(t) for t in rng.uniform(0.2, 0.8, size=2))
    top = frame[3].lerp(frame[0], u)
    bottom = frame[2].lerp(frame[1], u)
    local = bottom.lerp(top, v)
    mw = camera.matrix_world
    origin = mw.translation
    direction = (mw.to_3x3() @ local).normalized()
    z = so.obj.location.z
    if direction.z < -1e-6 and origin.z > z:
        t = (z - origin.z) / direction.z
        hit = origin + t * direction
        so.obj.location.x, so.obj.location.y = hit.x, hit.y
        return
    others = [(o.obj.location.x, o.obj.location.y, o.footprint) for o in scene_objects if o is not so]
    so.obj.location.x, so.obj.location.y = _place_xy(rng, cfg.objects.scatter_radius, so.footprint, others)
