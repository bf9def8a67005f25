"""Every instance its own id: instancers replaced by real objects for one render.

Cycles' Object Index pass is per object: the instances a Geometry-Nodes modifier scatters, the
particles of a particle system and the objects of a collection instance all carry their
instancer's ``pass_index``, so they would share one mask. This module reads the evaluated scene
(``depsgraph.object_instances``: every instance with its evaluated geometry and world matrix) and
stands a real object in for each instance, with a copy of that geometry (one copy per distinct
geometry, shared by the instances that use it) and the instance's exact world matrix; the
instancers are hidden from the render meanwhile. What Cycles renders is then the same geometry in
the same places, and each instance can get its own pass index. ``Realized.undo()`` removes what was
added and unhides the instancers, so the user's scene is left as it was.

Which pieces form one instance (``_instance_key``): for a collection-instance empty, everything it
instances (a chair of three parts is one chair); for a particle system, each particle; for a
Geometry-Nodes instancer, each instance of its output (the point it sits on), with a collection it
instances kept whole. The instancer's own geometry, when it has any besides its instances (a GN
tree that joins a mesh and instances), is one more group.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import bpy

RENDERABLE = {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME"}


@dataclass
class InstanceGroup:
    """One instance as the artist sees it, made of one or more stand-in objects."""

    instancer: str  # the original object that makes it: GN object, particle emitter, collection-instance empty
    index: int  # its top-level instance index under the instancer (-1: the instancer's own geometry)
    objects: list[Any] = field(default_factory=list)  # the stand-in bpy objects (one per part)


@dataclass
class Realized:
    groups: list[InstanceGroup]
    hidden: list[Any]  # the instancers hidden from the render
    meshes: list[Any]  # the geometry copies

    def undo(self) -> None:
        """Remove the stand-ins and their geometry, show the instancers again."""
        for group in self.groups:
            for obj in group.objects:
                bpy.data.objects.remove(obj, do_unlink=True)
            group.objects.clear()
        for mesh in self.meshes:
            if mesh.users == 0:
                bpy.data.meshes.remove(mesh)
        for obj in self.hidden:
            obj.hide_render = False
        self.groups, self.hidden, self.meshes = [], [], []


def _copy_geometry(evaluated: Any) -> Any:
    """A mesh in bpy.data with the evaluated geometry of one instance (materials, UVs, attributes).

    An evaluated mesh is copied as it is; ``new_from_object`` would re-evaluate the instance's
    *original*, which for a Geometry-Nodes instance is the instancer itself, not the instance.
    """
    if isinstance(evaluated.data, bpy.types.Mesh):
        mesh = evaluated.data.copy()
    else:
        mesh = bpy.data.meshes.new_from_object(evaluated)  # curves, text, metaballs: their mesh form
    for i, material in enumerate(mesh.materials):  # the evaluated materials go with the depsgraph
        if material is not None and material.original is not material:
            mesh.materials[i] = material.original
    return mesh


_NONE = 0x7FFFFFFF  # persistent_id's filler past the instance's depth


def _instance_key(parent: Any, persistent_id: Any) -> int:
    """Which instance of ``parent`` a piece belongs to, from its instance path (``persistent_id``:
    one index per level of instancing).

    A collection-instance empty makes one instance of its whole collection: every piece is 0. A
    particle system's level 0 is the particle; a Geometry-Nodes modifier's level 0 is its output
    and level 1 the instance (the point it sits on). Deeper levels are parts of a collection that
    one particle or point instances, so they stay with it.
    """
    path = [int(p) for p in persistent_id if int(p) != _NONE]
    if parent.instance_type == "COLLECTION" and parent.instance_collection is not None:
        return 0
    if any(m.type == "NODES" for m in parent.modifiers) and len(path) >= 2:
        return path[1]
    return path[0] if path else 0


def instancers(depsgraph: Any) -> set[str]:
    """Names of the objects that make instances in the evaluated scene."""
    return {inst.parent.original.name for inst in depsgraph.object_instances
            if inst.is_instance and inst.parent is not None}


def _visible_instancers(depsgraph: Any, view_layer: Any) -> set[str]:
    """The instancers that render: not hidden from the render, visible in the view layer."""
    return {name for name in instancers(depsgraph)
            if not bpy.data.objects[name].hide_render and bpy.data.objects[name].visible_get(view_layer=view_layer)}


def _pieces(depsgraph: Any, made_by: set[str]) -> Iterator[tuple[str, int, Any, Any]]:
    """(instancer name, instance key, depsgraph instance, evaluated object) of every renderable piece
    that ``made_by``'s instancers make. The instance objects live only until the next step: a
    consumer copies what it needs before asking for the next piece."""
    for inst in depsgraph.object_instances:
        evaluated = inst.object
        if evaluated.type not in RENDERABLE:
            continue
        if inst.is_instance:
            if inst.parent is None or inst.parent.original.name not in made_by:
                continue
            parent = inst.parent.original
            yield parent.name, _instance_key(parent, inst.persistent_id), inst, evaluated
        else:
            # an instancer's own geometry (e.g. a GN tree that outputs a mesh beside its instances)
            name = evaluated.original.name
            if name not in made_by:
                continue
            if isinstance(evaluated.data, bpy.types.Mesh) and len(evaluated.data.polygons) == 0:
                continue
            yield name, -1, inst, evaluated


def instance_keys(view_layer: Any) -> set[tuple[str, int]]:
    """The (instancer, index) of every group ``realize_instances`` would make now, without making any
    (annotate-scene collects them over a frame range to give each instance one id for all frames)."""
    view_layer.update()
    depsgraph = view_layer.depsgraph
    return {(name, index) for name, index, _, _ in _pieces(depsgraph, _visible_instancers(depsgraph, view_layer))}


def realize_instances(scene: Any, view_layer: Any, collection: Any | None = None) -> Realized:
    """Stand real objects in for every instance of the visible instancers (see the module doc).

    The stand-ins are linked to ``collection`` (default: the scene's master collection); the
    instancers get ``hide_render = True`` until ``undo()``.
    """
    view_layer.update()
    depsgraph = view_layer.depsgraph
    target = collection if collection is not None else scene.collection
    made_by = _visible_instancers(depsgraph, view_layer)
    # The instance objects the iterator yields live only until the next step: each geometry is
    # copied when it is met (one copy per distinct evaluated geometry), the objects made afterwards.
    copies: dict[int, Any] = {}
    entries: list[tuple[str, int, int, Any, list[Any]]] = []
    for name, index, inst, evaluated in _pieces(depsgraph, made_by):
        pointer = evaluated.data.as_pointer() if evaluated.data is not None else evaluated.as_pointer()
        if pointer not in copies:
            copies[pointer] = _copy_geometry(evaluated)
        linked = [slot.material.original if slot.link == "OBJECT" and slot.material is not None else None
                  for slot in evaluated.material_slots]
        entries.append((name, index, pointer, inst.matrix_world.copy(), linked))

    by_key: dict[tuple[str, int], InstanceGroup] = {}
    for name, index, pointer, matrix, linked in entries:
        group = by_key.setdefault((name, index), InstanceGroup(name, index))
        stand_in = bpy.data.objects.new(f"{name}.instance.{index}", copies[pointer])
        stand_in.matrix_world = matrix
        for i, material in enumerate(linked):  # object-linked materials are not in the mesh
            if material is not None and i < len(stand_in.material_slots):
                stand_in.material_slots[i].link = "OBJECT"
                stand_in.material_slots[i].material = material
        target.objects.link(stand_in)
        group.objects.append(stand_in)
    hidden = [bpy.data.objects[name] for name in sorted(made_by)]
    for obj in hidden:
        obj.hide_render = True
    view_layer.update()
    groups = sorted(by_key.values(), key=lambda g: (g.instancer, g.index))
    return Realized(groups=groups, hidden=hidden, meshes=list(copies.values()))
