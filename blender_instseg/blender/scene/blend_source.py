"""An artist's .blend as the dataset spec: its collections are the categories, their contents the objects.

``scripts/generate.py --blend FILE``: under a parent collection (``--blend-collection``, default the
collection named ``InstSeg``, else the first scene's top-level collections) every child collection
is a category named after it, and every object in it (with its children) or child collection in it
is one instance template. Settings live on the category collections as custom properties, which
an artist sets in the Object Properties > Custom Properties panel of the collection:

- ``instseg_role``: ``target`` (default: annotated), ``distractor`` (rendered, never annotated) or
  ``ignore`` (left out);
- ``instseg_placement``: ``free`` or ``upright``; ``instseg_real_size``: true or false;
- ``instseg_count``: objects of this category per scene, ``[low, high]`` (or one number);
- ``instseg_physics``: true (dropped with the physics settings) or false (stands where placed, an
  obstacle the falling ones land on); unset: the generator's physics setting.

The add-on's panel edits the same properties (``props.CategorySettings``), so a file set up by hand,
by a script or in the panel reads the same, with or without the add-on installed.

The file is only read (``bpy.data.libraries.load``), never saved: the user's .blend is unchanged.
A template becomes one mesh the way an asset file does (``assets.py``): its evaluated geometry,
collection instances and Geometry-Nodes output included, merged with its materials.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from ...core.genconfig import BLEND_PREFIX, PLACEMENTS, GeneratorConfig
from .assets import AssetImportError, merge_meshes

DEFAULT_PARENT = "InstSeg"
ROLES = ("target", "distractor", "ignore")


@dataclass
class BlendSpec:
    """What a .blend offers: categories in order, target and distractor templates, per-category settings."""

    categories: list[str] = field(default_factory=list)
    shapes: dict[str, str] = field(default_factory=dict)  # "blend:<collection>/<item>" -> category
    distractors: list[str] = field(default_factory=list)
    per_category: dict[str, dict[str, Any]] = field(default_factory=dict)


def _key(category: str, item: str) -> str:
    return f"{BLEND_PREFIX}{category}/{item}"


def split_key(shape: str) -> tuple[str, str]:
    """("category collection", "object or child collection") of a ``blend:`` key."""
    category, _, item = shape[len(BLEND_PREFIX):].partition("/")
    return category, item


@contextlib.contextmanager
def _linked(path: Path) -> Iterator[Any]:
    """Link the file's scenes and collections for reading; everything linked goes again on exit."""
    if not path.is_file():
        raise AssetImportError(f"blend file not found: {path}")
    before = set(bpy.data.libraries)
    try:
        with bpy.data.libraries.load(str(path), link=True) as (src, dst):  # type: ignore[attr-defined]
            dst.scenes = list(src.scenes)
            dst.collections = list(src.collections)
    except OSError as exc:
        raise AssetImportError(f"cannot read {path}: {exc}") from None
    libs = [lib for lib in bpy.data.libraries if lib not in before]
    try:
        yield dst
    finally:
        for lib in libs:
            bpy.data.libraries.remove(lib)


@contextlib.contextmanager
def _appended(path: Path, collection: str) -> Iterator[Any]:
    """Append one collection (its objects, children, materials, images) as local data; the
    collections and objects go again on exit, the materials and images stay for the mesh."""
    if not path.is_file():
        raise AssetImportError(f"blend file not found: {path}")
    objects_before, colls_before = set(bpy.data.objects), set(bpy.data.collections)
    try:
        with bpy.data.libraries.load(str(path), link=False) as (src, dst):  # type: ignore[attr-defined]
            if collection not in src.collections:
                raise AssetImportError(f"{path} has no collection {collection!r}")
            dst.collections = [collection]
    except OSError as exc:
        raise AssetImportError(f"cannot read {path}: {exc}") from None
    try:
        yield dst.collections[0]
    finally:
        for obj in [o for o in bpy.data.objects if o not in objects_before]:
            data = obj.data
            bpy.data.objects.remove(obj, do_unlink=True)
            if isinstance(data, bpy.types.Mesh) and data.users == 0:
                bpy.data.meshes.remove(data)
        for coll in [c for c in bpy.data.collections if c not in colls_before]:
            bpy.data.collections.remove(coll)


def _templates(coll: Any) -> list[tuple[str, list[Any], Any | None]]:
    """(name, objects, child collection) per template: top objects with their descendants, child collections."""
    out = []
    for obj in sorted(coll.objects, key=lambda o: o.name):
        if obj.parent is None or obj.parent.name not in coll.objects:
            out.append((obj.name, [obj, *obj.children_recursive], None))
    for child in sorted(coll.children, key=lambda c: c.name):
        out.append((child.name, [], child))
    return out


def parent_groups(collections: Any, scenes: Any, parent: str = "") -> tuple[list[Any], str]:
    """The category collections: the children of ``parent`` (default ``InstSeg``), else the first
    scene's top-level collections; and a phrase saying where they came from. ``AssetImportError``
    when a named ``parent`` does not exist."""
    wanted = parent or DEFAULT_PARENT
    root = next((c for c in collections if c is not None and c.name == wanted), None)
    if root is not None:
        return list(root.children), f"collection {wanted!r}"
    if parent:
        raise AssetImportError(f"no collection named {parent!r}")
    scenes = [s for s in scenes if s is not None]
    return (list(scenes[0].collection.children) if scenes else []), "the first scene's top-level collections"


def role_of(coll: Any) -> str:
    """A category collection's ``instseg_role`` (default ``target``); ``AssetImportError`` for an unknown one."""
    role = str(coll.get("instseg_role", "target"))
    if role not in ROLES:
        raise AssetImportError(f"collection {coll.name!r}: instseg_role must be one of "
                               f"{', '.join(ROLES)}, got {role!r}")
    return role


def describe(groups: list[Any], where: str = "") -> BlendSpec:
    """The spec the category collections ``groups`` give (see the module doc)."""
    spec = BlendSpec()
    for coll in groups:
        role = role_of(coll)
        if role == "ignore":
            continue
        templates = _templates(coll)
        if not templates:
            raise AssetImportError(f"collection {coll.name!r} holds no object or collection")
        keys = [_key(coll.name, name) for name, _, _ in templates]
        if role == "distractor":
            spec.distractors += keys
            continue
        spec.categories.append(coll.name)
        spec.shapes.update({k: coll.name for k in keys})
        over: dict[str, Any] = {}
        if "instseg_placement" in coll:
            placement = str(coll["instseg_placement"])
            if placement not in PLACEMENTS:
                raise AssetImportError(f"collection {coll.name!r}: instseg_placement must be one of "
                                       f"{', '.join(PLACEMENTS)}, got {placement!r}")
            over["placement"] = placement
        if "instseg_real_size" in coll:
            over["real_size"] = bool(coll["instseg_real_size"])
        if "instseg_physics" in coll:
            over["physics"] = bool(coll["instseg_physics"])
        if "instseg_count" in coll:
            value = coll["instseg_count"]
            count = list(value.to_list() if hasattr(value, "to_list") else [value, value])
            if not (len(count) == 2 and all(isinstance(v, int) for v in count) and 0 <= count[0] <= count[1]):
                raise AssetImportError(f"collection {coll.name!r}: instseg_count must be two integers "
                                       f"low <= high (or one), got {count!r}")
            over["count"] = count
        if over:
            spec.per_category[coll.name] = over
    if not spec.categories:
        raise AssetImportError(f"no target collection under {where or 'the parent'} (one child collection per "
                               "category)")
    return spec


def scan_blend(path: Path, parent: str = "") -> BlendSpec:
    """Read ``path``'s categories and templates; ``AssetImportError`` (one line, naming the file)."""
    with _linked(path) as data:
        try:
            groups, where = parent_groups(data.collections, data.scenes, parent)
            return describe(groups, where)
        except AssetImportError as exc:
            raise AssetImportError(f"{path}: {exc}") from None


def use_blend(cfg: GeneratorConfig, path: Path, parent: str = "") -> None:
    """Point ``cfg`` at the .blend: its categories, templates, distractors and per-category settings."""
    spec = scan_blend(path, parent)
    cfg.objects.blend_file = str(path.resolve())
    cfg.categories = spec.categories
    cfg.objects.shapes = spec.shapes
    cfg.objects.per_category = {**cfg.objects.per_category, **spec.per_category}
    if spec.distractors:
        cfg.distractors.shapes = spec.distractors
        if cfg.distractors.max_count == 0:
            cfg.distractors.max_count = 3


def import_template(path: Path, shape: str, name: str) -> bpy.types.Mesh:
    """One template of the .blend as one new mesh (its evaluated geometry in its own space, with
    its materials), the way ``assets.import_mesh`` makes one of a file."""
    category, item = split_key(shape)
    with _appended(path, category) as coll:
        found = [(objs, child) for t_name, objs, child in _templates(coll) if t_name == item]
        if not found:
            raise AssetImportError(f"collection {category!r} of {path} has no object or collection {item!r}")
        objects, child = found[0]
        holder = child
        temp = None
        if holder is None:  # an object template: a collection of it and its children, just for reading
            temp = holder = bpy.data.collections.new("instseg_template")
            for obj in objects:
                holder.objects.link(obj)
        empty = bpy.data.objects.new("instseg_template", None)
        empty.instance_type, empty.instance_collection = "COLLECTION", holder
        bpy.context.scene.collection.objects.link(empty)
        try:
            mesh = _merge_instances(empty, name)
        finally:
            bpy.data.objects.remove(empty, do_unlink=True)
            if temp is not None:
                bpy.data.collections.remove(temp)
            bpy.context.view_layer.update()
    if len(mesh.polygons) == 0:
        bpy.data.meshes.remove(mesh)
        raise AssetImportError(f"{shape!r} of {path} has no faces: nothing to render")
    return mesh


def _merge_instances(empty: Any, name: str) -> bpy.types.Mesh:
    """Everything ``empty`` instances, evaluated, merged into one mesh with its materials."""
    view_layer = bpy.context.view_layer
    view_layer.update()
    depsgraph = view_layer.depsgraph
    # copies are made while iterating (the instance objects live only until the next step) and
    # merged, then removed, afterwards: bpy.data must not lose anything mid-iteration
    pieces: list[tuple[Any, list[Any]]] = []
    for inst in depsgraph.object_instances:
        if not inst.is_instance or inst.parent is None or inst.parent.original != empty:
            continue
        evaluated = inst.object
        if not isinstance(evaluated.data, bpy.types.Mesh):
            continue
        temp = evaluated.data.copy()
        temp.transform(inst.matrix_world)
        # the original materials: the evaluated ones are copies that live as long as the depsgraph
        slots = [slot.material.original if slot.material is not None else None for slot in evaluated.material_slots]
        pieces.append((temp, slots or [None]))
    try:
        return merge_meshes(pieces, name)
    finally:
        for temp, _ in pieces:
            bpy.data.meshes.remove(temp)
