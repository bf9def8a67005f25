"""Mesh datablocks for every shape, made once per process and shared by all objects of that shape.

Sharing one mesh between objects is deliberate: it is the case that breaks material- or
mesh-based instance ids in other tools, and it makes scene building fast. Ids live on the object
(``pass_index``), so linked duplicates still get distinct ids.

Every mesh is centred on the origin and scaled so its largest half-extent is 1 (its own size is
kept in ``ShapeMesh.size``, for ``objects.real_size``). The local vertex array and the triangle
index array (Blender's own loop triangulation, the one Cycles renders) are cached next to the mesh
for the amodal rasteriser. Bundled ``asset:`` meshes and the user's ``file:`` assets come in through
Blender's importers (``assets.py``); ``file:`` assets keep their materials in the mesh's slots.

The objects showing a mesh are pooled too (``take_object`` / ``release_objects``): a scene takes
them from the mesh's pool and they are parked again afterwards, never deleted, so Cycles keeps
each mesh and its BVH from one image to the next (``_start_pool`` says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import bmesh
import bpy
import numpy as np

from ...core.genconfig import ASSET_PREFIX, BLEND_PREFIX, FILE_PREFIX, PRIMITIVES
from ..render.amodal import closed_neighbours
from . import assets, blend_source

def _find_assets_dir() -> Path:
    """``assets/`` sits inside the package in the installed extension (the zip's root is the
    package) and next to the package in a source checkout."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "assets", here.parents[3] / "assets"):
        if candidate.is_dir():
            return candidate
    return here.parents[3] / "assets"


ASSETS_DIR = _find_assets_dir()


@dataclass
class ShapeMesh:
    mesh: bpy.types.Mesh
    verts: np.ndarray  # (V, 3) float64, local coordinates, one per distinct position
    tris: np.ndarray  # (T, 3) intp (the gathers' own index type), indices into verts
    radius: float  # max vertex distance from the origin (bounding sphere)
    size: float = 1.0  # the largest half-extent before normalisation, in the file's units (metres)
    own_materials: bool = False  # the mesh's slots hold the asset's own materials (file: assets)
    # each triangle edge's neighbour when the mesh is a closed, consistently wound surface, else None
    # (render.amodal.closed_neighbours): its amodal mask then fills the outline of one winding
    neighbours: np.ndarray | None = None
    free: list[bpy.types.Object] = field(default_factory=list)  # parked objects (``take_object``)


_CACHE: dict[str, ShapeMesh] = {}

POOL_PROP = "instseg_pooled"
_IN_USE: list[tuple[ShapeMesh, bpy.types.Object]] = []
_RAYS = ("visible_camera", "visible_diffuse", "visible_glossy", "visible_transmission", "visible_shadow")
_PARKED_AT = (0.0, 0.0, -1.0e4)


_PARKED_SYNCED = [True]  # parked objects stay in Cycles' scene (``sync_parked``)


def sync_parked(synced: bool) -> None:
    """Whether parked objects stay in Cycles' scene (the default) or leave the render (``hide_render``).

    Why both: with persistent render data (masks-only runs) Cycles keeps a mesh only while it stays
    in the scene, so parked objects must be synced; without it (RGB runs) every render syncs every
    mesh in the scene and builds its BVH again, so parked objects only cost time (about 15 ms a
    render with twenty 20k-triangle assets)."""
    _PARKED_SYNCED[0] = synced
    for sm in _CACHE.values():
        if _alive(sm):
            for obj in sm.free:
                if obj.hide_render == synced:
                    obj.hide_render = not synced


def _park(obj: bpy.types.Object, sm: ShapeMesh) -> None:
    """Out of every ray's way but still in Cycles' scene: visible to volume-scatter rays only (an
    object visible to no ray is not synced at all; the generator's scenes have no volume), far below
    the ground; back in ``sm``'s pool. Out of the render altogether unless ``sync_parked``."""
    for ray in _RAYS:
        if getattr(obj, ray):
            setattr(obj, ray, False)
    if obj.hide_render == _PARKED_SYNCED[0]:
        obj.hide_render = not _PARKED_SYNCED[0]
    obj.location = _PARKED_AT
    obj.name = f"instseg_pool_{sm.mesh.name}"
    sm.free.append(obj)


def _pool_object(sm: ShapeMesh, collection: bpy.types.Collection, name: str) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, sm.mesh)
    obj[POOL_PROP] = True
    collection.objects.link(obj)
    return obj


def _start_pool(sm: ShapeMesh) -> None:
    """Two parked objects for a new shape mesh, so it always has two users in the scene.

    Why: with persistent render data (render/cycles.py) Cycles keeps a mesh it has synced, and its
    BVH, as long as the mesh stays in the scene and is not flattened into world space. It flattens
    (applies the object's transform to the vertices) a mesh that one object alone uses, and must then
    sync the whole mesh again whenever that object moves; a mesh missing from one render is dropped.
    A pool that never holds fewer than two objects, parked or shown, keeps every shape mesh
    instanced and present, so an image costs Cycles the objects' transforms, not their triangles.
    """
    for _ in range(2):
        _park(_pool_object(sm, bpy.context.scene.collection, f"instseg_pool_{sm.mesh.name}"), sm)


def take_object(sm: ShapeMesh, name: str, collection: bpy.types.Collection) -> bpy.types.Object:
    """A plain object showing ``sm``'s mesh, named ``name``: a parked one from ``sm``'s pool (an
    earlier image's, reset by ``release_objects``), else a new one linked to ``collection``.

    Why reuse, and park rather than unlink: an object that is new to the scene, or comes back into
    it, makes Blender's depsgraph report its mesh as changed, and Cycles then syncs the whole mesh
    again; a parked object that is shown again has only moved.
    """
    if sm.free:
        obj = sm.free.pop()
        obj.name = name
        for ray in _RAYS:
            setattr(obj, ray, True)
        if obj.hide_render:
            obj.hide_render = False
    else:
        obj = _pool_object(sm, collection, name)
    _IN_USE.append((sm, obj))
    return obj


def release_objects() -> None:
    """Park every object ``take_object`` gave out, reset to what a new object is: no custom
    properties but the pool's mark, no animation, its slots on the mesh's own materials, unrotated."""
    for sm, obj in _IN_USE:
        try:
            obj.animation_data_clear()
        except ReferenceError:  # removed by a file load since: nothing to park
            continue
        for key in [k for k in obj.keys() if k != POOL_PROP]:
            del obj[key]
        for slot in obj.material_slots:
            if slot.link == "OBJECT":
                slot.material = None
                slot.link = "DATA"
        if obj.parent is not None:
            obj.parent = None
        if obj.is_shadow_catcher:  # the ground under a photo backplate (scene/backplate.py)
            obj.is_shadow_catcher = False
        obj.pass_index = 0
        obj.rotation_mode = "XYZ"
        obj.rotation_euler = (0.0, 0.0, 0.0)
        obj.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
        obj.scale = (1.0, 1.0, 1.0)
        _park(obj, sm)
    _IN_USE.clear()


def asset_path(name: str, assets_dir: Path | None = None) -> Path:
    return (assets_dir or ASSETS_DIR) / f"{name}.obj"


def check_assets(names: list[str], assets_dir: Path | None = None) -> None:
    """Raise ``ValueError`` naming the first asset without an OBJ file, before anything is written."""
    for name in names:
        p = asset_path(name, assets_dir)
        if not p.is_file():
            raise ValueError(f"unknown asset {name!r}: no file {p} (run scripts/make_assets.py or fix objects.shapes)")


def preload(shapes: list[str], user_dir: str, max_triangles: int = 0) -> None:
    """Import every ``file:`` shape now: a file that does not import fails before anything is written
    (``assets.AssetImportError``, one line naming the file), and the meshes are cached for the run."""
    for shape in shapes:
        get_shape(shape, user_dir=user_dir, max_triangles=max_triangles)


def _torus(major_segments: int = 32, minor_segments: int = 12, minor_radius: float = 0.3) -> tuple[np.ndarray, list[list[int]]]:
    verts = []
    for i in range(major_segments):
        a = 2 * math.pi * i / major_segments
        for j in range(minor_segments):
            b = 2 * math.pi * j / minor_segments
            r = 1.0 + minor_radius * math.cos(b)
            verts.append((r * math.cos(a), r * math.sin(a), minor_radius * math.sin(b)))
    faces = []
    for i in range(major_segments):
        i2 = (i + 1) % major_segments
        for j in range(minor_segments):
            j2 = (j + 1) % minor_segments
            faces.append([i * minor_segments + j, i2 * minor_segments + j, i2 * minor_segments + j2, i * minor_segments + j2])
    return np.asarray(verts, np.float64), faces


def _primitive_bmesh(shape: str) -> bmesh.types.BMesh:
    bm = bmesh.new()
    if shape == "cube":
        bmesh.ops.create_cube(bm, size=2.0)
    elif shape == "sphere":
        bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=1.0)
    elif shape == "cylinder":
        bmesh.ops.create_cone(bm, cap_ends=True, segments=32, radius1=1.0, radius2=1.0, depth=2.0)
    elif shape == "cone":
        bmesh.ops.create_cone(bm, cap_ends=True, segments=32, radius1=1.0, radius2=0.0, depth=2.0)
    elif shape == "monkey":
        bmesh.ops.create_monkey(bm)
    else:  # pragma: no cover - guarded by the config validator
        raise ValueError(f"unknown primitive {shape!r}")
    return bm


def _mesh_from_pydata(name: str, verts: np.ndarray, faces: list[list[int]]) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(v) for v in verts], [], faces)
    mesh.validate()
    mesh.update()
    return mesh


def _normalise(mesh: bpy.types.Mesh) -> float:
    """Centre the bounding box on the origin and scale the largest half-extent to 1; returns that
    half-extent as it was."""
    n = len(mesh.vertices)
    co = np.empty(n * 3, np.float64)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(n, 3)
    centre = (co.max(0) + co.min(0)) / 2
    co -= centre
    size = max(float(np.abs(co).max()), 1e-9)
    co /= size
    mesh.vertices.foreach_set("co", co.ravel())
    mesh.update()
    return size


def _build(shape: str, assets_dir: Path | None, user_dir: str, max_triangles: int) -> tuple[bpy.types.Mesh, float]:
    name = f"shape_{shape.replace(':', '_')}"
    if shape == "torus":
        v, f = _torus()
        mesh = _mesh_from_pydata(name, v, f)
    elif shape in PRIMITIVES:
        bm = _primitive_bmesh(shape)
        mesh = bpy.data.meshes.new(name)
        bm.to_mesh(mesh)
        bm.free()
    elif shape.startswith(ASSET_PREFIX):
        mesh = assets.import_mesh(asset_path(shape[len(ASSET_PREFIX):], assets_dir), name, assets.BUNDLED_OBJ)
    elif shape.startswith(FILE_PREFIX):
        mesh = assets.import_mesh(Path(user_dir) / shape[len(FILE_PREFIX):], name)
    elif shape.startswith(BLEND_PREFIX):
        mesh = blend_source.import_template(Path(user_dir), shape, name)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    if max_triangles:
        assets.simplify(mesh, max_triangles, shape)
    size = _normalise(mesh)
    if not shape.startswith((FILE_PREFIX, BLEND_PREFIX)):  # the user's assets keep their own shading
        for poly in mesh.polygons:
            poly.use_smooth = shape in ("sphere", "torus", "monkey", "asset:vase")
    if len(mesh.materials) == 0:
        mesh.materials.append(None)  # one slot; objects link their own material to it (slot link = OBJECT)
    mesh.use_fake_user = True
    return mesh, size


def _alive(item: ShapeMesh) -> bool:
    try:
        return item.mesh.name is not None and item.mesh.name in bpy.data.meshes
    except ReferenceError:
        return False


def get_shape(shape: str, assets_dir: Path | None = None, user_dir: str = "", max_triangles: int = 0) -> ShapeMesh:
    """The shared mesh for ``shape`` (built on first use, rebuilt after a factory reset); ``user_dir``
    is the folder of ``file:`` shapes (objects.assets_dir) or the .blend of ``blend:`` ones, whose
    meshes are simplified to ``max_triangles`` (objects.max_triangles; 0: kept as they are)."""
    user = shape.startswith((FILE_PREFIX, BLEND_PREFIX))
    key = f"{user_dir}|{max_triangles}|{shape}" if user else shape
    item = _cached(key)
    if item is not None:
        return item
    mesh, size = _build(shape, assets_dir, user_dir, max_triangles if user else 0)
    n = len(mesh.vertices)
    verts = np.empty(n * 3, np.float64)
    mesh.vertices.foreach_get("co", verts)
    verts = verts.reshape(n, 3)
    tris = _loop_triangles(mesh)
    t = len(tris)
    own = shape.startswith((FILE_PREFIX, BLEND_PREFIX)) and any(m is not None for m in mesh.materials)
    # one vertex per position: imported files split vertices along UV seams and hard edges (a glTF
    # has about three per triangle), which only multiplies the per-image projection work
    verts, welded = np.unique(verts, axis=0, return_inverse=True)
    faces = welded.reshape(-1)[tris]
    if t:  # loose vertices out: they are no triangle's corner and never render
        used, corners = np.unique(faces, return_inverse=True)
        verts, faces = verts[used], corners.reshape(t, 3)
    faces = np.ascontiguousarray(faces, dtype=np.intp)
    return _keep(key, ShapeMesh(mesh=mesh, verts=verts, tris=faces, radius=float(np.linalg.norm(verts, axis=1).max()),
                                size=size, own_materials=own, neighbours=closed_neighbours(verts, faces)))


def ground_shape(size: float) -> ShapeMesh:
    """The ground plane's mesh: a square of side ``size`` metres on z = 0, with a UV map in metres
    (u, v = x, y: textures.py's ground textures and their normal maps follow it).

    Pooled like the shapes' meshes (``take_object``): a ground made anew for every image is a new
    one-user mesh, and with persistent render data Cycles then updates far more than the plane (every
    other mesh's data too), which costs an image of dense assets more than its own objects moving."""
    key = f"ground|{size!r}"
    item = _cached(key)
    if item is not None:
        return item
    h = size / 2
    verts = np.array([(-h, -h, 0.0), (h, -h, 0.0), (h, h, 0.0), (-h, h, 0.0)])
    mesh = bpy.data.meshes.new("ground")
    mesh.from_pydata(verts.tolist(), [], [(0, 1, 2, 3)])
    mesh.materials.append(None)  # objects link their own material to it (slot link = OBJECT)
    uv = mesh.uv_layers.new(name="UVMap")
    for loop in mesh.loops:
        co = mesh.vertices[loop.vertex_index].co
        uv.data[loop.index].uv = (co.x, co.y)
    mesh.use_fake_user = True
    tris = _loop_triangles(mesh).astype(np.intp)
    return _keep(key, ShapeMesh(mesh=mesh, verts=verts, tris=tris, radius=float(np.linalg.norm(verts, axis=1).max())))


def _cached(key: str) -> ShapeMesh | None:
    """The cached mesh under ``key``, unless a factory reset has removed it since."""
    item = _CACHE.get(key)
    return item if item is not None and _alive(item) else None


def _keep(key: str, item: ShapeMesh) -> ShapeMesh:
    """Cache a new mesh under ``key`` and start its pool of parked objects."""
    _start_pool(item)
    _CACHE[key] = item
    return item


def _loop_triangles(mesh: bpy.types.Mesh) -> np.ndarray:
    """(T, 3) int32 vertex indices of Blender's own triangulation of ``mesh`` (what Cycles renders)."""
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3)


def clear_cache() -> None:
    _CACHE.clear()
    _IN_USE.clear()
