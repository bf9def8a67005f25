"""Asset files -> one mesh datablock each, through Blender's own importers.

Every format goes through the importer Blender ships (OBJ, glTF, FBX, PLY, STL, USD) or, for a
.blend, ``bpy.data.libraries.load``; nothing here parses a file format. An imported file may hold
many objects (a glTF hierarchy, a .blend's parts): their evaluated meshes (modifiers applied) are
merged, in world space, into ONE mesh that keeps every material slot, UV map and face attribute, and
the file's objects are removed again. One mesh per asset is what the scene builder shares between
all instances of that asset (linked data: imported once per process, never per image), and what the
amodal rasteriser reads. A mesh denser than ``objects.max_triangles`` is simplified once, right
after its import (``simplify``: Blender's Decimate modifier), and that simplified mesh is then the
one rendered and rasterised.

Importers print progress lines on stdout; in the generator stdout carries the JSON-lines events,
so they are sent to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bmesh
import bpy
import numpy as np


log = logging.getLogger(__name__)


class AssetImportError(ValueError):
    """An asset that cannot be imported; one line naming the file."""


def _op(category: str, name: str, **kwargs: Any) -> Callable[[Path], None]:
    def run(path: Path) -> None:
        op = getattr(getattr(bpy.ops, category), name)
        result = op(filepath=str(path), **kwargs)
        if "FINISHED" not in result:
            raise AssetImportError(f"cannot import {path}: the {category}.{name} importer returned {sorted(result)}")

    return run


def _load_blend(path: Path) -> None:
    """Append every object of the .blend and link them to the scene (so their modifiers evaluate)."""
    with bpy.data.libraries.load(str(path), link=False) as (src, dst):  # type: ignore[attr-defined]  # stubs: load() -> None
        dst.objects = list(src.objects)
    for obj in dst.objects:
        if obj is not None:
            bpy.context.scene.collection.objects.link(obj)


# suffix -> importer; a new format is one row (and one entry in core.genconfig.ASSET_FILE_SUFFIXES)
IMPORTERS: dict[str, Callable[[Path], None]] = {
    ".obj": _op("wm", "obj_import"),
    ".glb": _op("import_scene", "gltf"),
    ".gltf": _op("import_scene", "gltf"),
    ".fbx": _op("import_scene", "fbx"),
    ".ply": _op("wm", "ply_import"),
    ".stl": _op("wm", "stl_import"),
    ".usd": _op("wm", "usd_import"),
    ".usda": _op("wm", "usd_import"),
    ".usdc": _op("wm", "usd_import"),
    ".usdz": _op("wm", "usd_import"),
    ".blend": _load_blend,
}
# The bundled assets/*.obj were written Z-up (scripts/make_assets.py): read them as they are.
BUNDLED_OBJ = _op("wm", "obj_import", forward_axis="Y", up_axis="Z")


def import_mesh(path: Path, name: str, importer: Callable[[Path], None] | None = None) -> bpy.types.Mesh:
    """Import ``path`` and return one new mesh holding all of its mesh geometry, in the file's world
    space, with the file's materials in its slots. Raises ``AssetImportError`` (one line)."""
    suffix = path.suffix.lower()
    run = importer or IMPORTERS.get(suffix)
    if run is None:
        raise AssetImportError(f"cannot import {path}: no importer for {suffix!r} files")
    if not path.is_file():
        raise AssetImportError(f"asset file not found: {path}")
    if suffix.startswith(".usd") and not hasattr(bpy.ops.wm, "usd_import"):
        raise AssetImportError(f"cannot import {path}: this Blender build has no USD importer")
    before = set(bpy.data.objects)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            run(path)
    except AssetImportError:
        raise
    except Exception as exc:  # the importer's own error (RuntimeError from bpy.ops, OSError, ...)
        detail = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = detail[-1].removeprefix("Error: ") if detail else type(exc).__name__
        raise AssetImportError(f"cannot import {path}: {reason}") from None
    new = [obj for obj in bpy.data.objects if obj not in before]
    try:
        mesh_objects = [obj for obj in new if obj.type == "MESH"]
        if not mesh_objects:
            raise AssetImportError(f"{path} holds no mesh object (found: {sorted({o.type for o in new}) or 'nothing'})")
        mesh = _merge(mesh_objects, name)
        if len(mesh.polygons) == 0:
            bpy.data.meshes.remove(mesh)
            raise AssetImportError(f"{path} holds no faces (only points or edges): nothing to render")
        return mesh
    finally:
        for obj in new:
            data = obj.data
            bpy.data.objects.remove(obj, do_unlink=True)
            if isinstance(data, bpy.types.Mesh) and data.users == 0:
                bpy.data.meshes.remove(data)


def _merge(objects: list[bpy.types.Object], name: str) -> bpy.types.Mesh:
    """The evaluated meshes of ``objects`` in world space, merged into one new mesh."""
    bpy.context.view_layer.update()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = [obj.evaluated_get(depsgraph) for obj in sorted(objects, key=lambda o: o.name)]
    try:
        pieces = []
        for ev in evaluated:
            temp = ev.to_mesh()  # owned by the evaluated object until to_mesh_clear()
            temp.transform(ev.matrix_world)
            pieces.append((temp, [slot.material for slot in ev.original.material_slots]))
        return merge_meshes(pieces, name)
    finally:
        for ev in evaluated:
            ev.to_mesh_clear()


def merge_meshes(pieces: list[tuple[bpy.types.Mesh, list[Any]]], name: str) -> bpy.types.Mesh:
    """One new mesh from ``pieces`` (meshes already in one space, each with its slots' materials):
    material indices are offset so every face keeps its material, and the materials get a fake
    user, since the generator clears unused materials between images."""
    bm = bmesh.new()
    materials: list[Any] = []
    for piece, slots in pieces:
        faces_before = len(bm.faces)
        bm.from_mesh(piece)
        offset = len(materials)
        materials.extend(slots or [None])
        if offset:
            bm.faces.ensure_lookup_table()
            for face in bm.faces[faces_before:]:
                face.material_index += offset
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    for material in materials:
        mesh.materials.append(material)
        if material is not None:
            material.use_fake_user = True
    mesh.update()
    return mesh


def triangle_count(mesh: bpy.types.Mesh) -> int:
    """Triangles of Blender's own triangulation of ``mesh`` (what Cycles renders)."""
    mesh.calc_loop_triangles()
    return len(mesh.loop_triangles)


def _weld(mesh: bpy.types.Mesh) -> None:
    """Merge vertices at the same position. Importers split them along hard edges and UV seams (a
    flat-shaded glTF has three per triangle), and Decimate cannot collapse across such a split: on
    a mesh of loose triangles it deletes whole triangles and leaves holes. Face corners keep their
    own UVs and normals, so seams and hard edges survive as corner data."""
    co = np.empty(len(mesh.vertices) * 3, np.float64)
    mesh.vertices.foreach_get("co", co)
    extent = float(np.abs(co).max()) if len(co) else 1.0
    bm = bmesh.new()
    bm.from_mesh(mesh)
    bmesh.ops.remove_doubles(bm, verts=list(bm.verts), dist=1e-6 * max(extent, 1e-9))
    bm.to_mesh(mesh)
    bm.free()
    mesh.update()


def simplify(mesh: bpy.types.Mesh, max_triangles: int, label: str = "") -> int:
    """Reduce ``mesh`` in place to at most ``max_triangles`` triangles with Blender's Decimate
    modifier (collapse, triangulated), keeping its material slots, per-face materials and UV maps;
    returns the triangle count it ends with. A mesh within the limit is left as it is.

    Why: Cycles on a CPU traces dense meshes much more slowly (docs/benchmarks.md, by mesh density),
    and scans often carry far more triangles than a 256-1024 px training image can show. The masks
    stay exact: they come from this mesh, the one rendered. Collapse lands near the requested ratio, not on it, so the ratio is lowered and the
    collapse repeated (from the original) until the count is within the limit; a limit below what
    collapse can reach (a couple of triangles per separate part) ends where it stops, and the log
    says where."""
    before = triangle_count(mesh)
    if max_triangles <= 0 or before <= max_triangles:
        return before
    _weld(mesh)
    holder = bpy.data.objects.new("instseg_simplify", mesh)
    bpy.context.scene.collection.objects.link(holder)
    modifier = holder.modifiers.new("instseg_decimate", "DECIMATE")
    assert isinstance(modifier, bpy.types.DecimateModifier)
    modifier.decimate_type = "COLLAPSE"
    modifier.use_collapse_triangulate = True
    ratio, result, after = max_triangles / before, None, before
    try:
        for _ in range(4):
            modifier.ratio = ratio
            bpy.context.view_layer.update()
            evaluated = holder.evaluated_get(bpy.context.evaluated_depsgraph_get())
            if result is not None:
                bpy.data.meshes.remove(result)
            result = bpy.data.meshes.new_from_object(evaluated)
            after = triangle_count(result)
            if after <= max_triangles:
                break
            ratio *= 0.98 * max_triangles / after
        assert result is not None
        bm = bmesh.new()
        bm.from_mesh(result)
        bm.to_mesh(mesh)  # the geometry only: the mesh keeps its name, users and material slots
        bm.free()
        mesh.update()
    finally:
        bpy.data.objects.remove(holder, do_unlink=True)
        if result is not None:
            bpy.data.meshes.remove(result)
    log.info("%s: simplified from %d to %d triangles (max_triangles %d)", label or mesh.name, before, after,
             max_triangles)
    return after
