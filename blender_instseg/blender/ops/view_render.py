"""Render the active camera once with Cycles and keep RGB + Object Index in memory.

Predict View needs to know which scene object owns each pixel, so every visible object gets a
temporary unique ``pass_index`` (restored afterwards, with every render setting we touch), every
instance of a Geometry-Nodes scatter, particle system or collection instance gets one too through
temporary stand-in objects (``scene.instances``; removed afterwards, and a pixel of an instance
belongs to its instancer, the object the artist can select), and the
Object Index pass is read straight from the RenderResult (blender-5.0-facts.md section 3,
approach A: wrap ``CyclesRender.render`` and copy passes with ``foreach_get``; no files, no
compositor, and it works in background mode where the Viewer node never fills).

The passes are decoded with the generator's own functions (``render.cycles.index_map`` and
``rgb8``), so the image the model sees is converted exactly like its training images. The
wrapper itself is scoped to this one render and removed afterwards: in an artist's Blender the
add-on must not leave Cycles patched (the generator's permanent ``install_capture`` is meant for
its own batch processes).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator

import bpy
import numpy as np

from ..render import cycles as rc
from ..scene import instances

log = logging.getLogger(__name__)

RENDERABLE = {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME"}


@dataclass
class ViewRender:
    rgb: np.ndarray  # H x W x 3 uint8 (display-referred sRGB), top row first
    id_map: np.ndarray  # H x W uint16; 0 = background
    index_to_object: dict[int, str]  # pass index -> object name
    # pass index -> what the artist would call this one thing: the object's name, or
    # "instancer [k]" for the k-th instance an instancer makes; stable from frame to frame
    # (instances.InstanceGroup keys), so a frame range can follow each instance
    index_to_instance: dict[int, str] = field(default_factory=dict)


@contextlib.contextmanager
def _capture_passes(layer_name: str) -> Iterator[dict[str, np.ndarray]]:
    import cycles  # bundled add-on; importable once bpy is

    captured: dict[str, np.ndarray] = {}
    original = cycles.CyclesRender.render

    def capturing_render(self: Any, depsgraph: Any) -> None:
        original(self, depsgraph)
        result = self.get_result()
        w, h = result.resolution_x, result.resolution_y
        layers = list(result.layers)
        chosen = next((layer for layer in layers if layer.name == layer_name), layers[0] if layers else None)
        if chosen is None:
            return
        for p in chosen.passes:
            if p.name in ("Combined", *rc.INDEX_PASS_NAMES):
                buf = np.empty(w * h * p.channels, np.float32)
                p.rect.foreach_get(buf)
                captured[p.name] = np.flipud(buf.reshape(h, w, p.channels))

    cycles.CyclesRender.render = capturing_render
    try:
        yield captured
    finally:
        cycles.CyclesRender.render = original


@contextlib.contextmanager
def _temporarily(obj: Any, **values: Any) -> Iterator[None]:
    saved = {k: getattr(obj, k) for k in values}
    try:
        for k, v in values.items():
            setattr(obj, k, v)
        yield
    finally:
        for k, v in saved.items():
            try:
                setattr(obj, k, v)
            except (AttributeError, TypeError, ValueError):  # e.g. an enum item that vanished
                log.warning("could not restore %s.%s", obj, k)


GENERATOR_MARK = "instseg_instance_id"  # set on the objects of a generator scene (scene.builder)


def candidate_objects(scene: Any, view_layer: Any) -> list[Any]:
    """The objects a prediction may be matched to.

    In a scene the generator built, only its instances (custom property ``instseg_instance_id``)
    are candidates and the rest (the ground) is background. In any other scene every visible
    renderable object is one, whatever pass indices the artist gave them for their own compositing.
    """
    visible = [ob for ob in scene.objects if ob.type in RENDERABLE and ob.visible_get(view_layer=view_layer)
               and not ob.hide_render]
    marked = [ob for ob in visible if GENERATOR_MARK in ob.keys()]
    return marked or visible


def render_view(context: Any, samples: int = 8) -> ViewRender:
    """Render the scene's active camera; raise ValueError with a one-line reason if it cannot."""
    scene = context.scene
    if scene.camera is None:
        raise ValueError("the scene has no active camera; add one or set Scene > Camera")
    view_layer = context.view_layer
    realized = instances.realize_instances(scene, view_layer)
    try:
        return _render_ids(scene, view_layer, realized, samples)
    finally:
        realized.undo()


def _render_ids(scene: Any, view_layer: Any, realized: instances.Realized, samples: int) -> ViewRender:
    stand_ins = {ob.name for group in realized.groups for ob in group.objects}
    objects = [ob for ob in candidate_objects(scene, view_layer) if ob.name not in stand_ins]
    if not objects and not realized.groups:
        raise ValueError("nothing to predict: the scene has no visible objects")
    if len(objects) + len(realized.groups) > 65535:
        raise ValueError("more than 65535 visible objects; the index pass cannot tell them apart")
    saved_index = {ob.name: ob.pass_index for ob in objects}
    index_to_object = {i: ob.name for i, ob in enumerate(objects, start=1)}
    index_to_instance = dict(index_to_object)
    first = len(objects) + 1
    for k, group in enumerate(realized.groups, start=first):
        index_to_object[k] = group.instancer  # an instance's pixels select the object that makes it
        index_to_instance[k] = instance_label(group.instancer, group.index)
        for ob in group.objects:
            ob.pass_index = k
    render = scene.render
    cyc = scene.cycles
    try:
        for i, ob in enumerate(objects, start=1):
            ob.pass_index = i
        with _temporarily(render, engine="CYCLES"), \
                _temporarily(cyc, samples=max(1, int(samples)), use_denoising=False, use_adaptive_sampling=False), \
                _temporarily(view_layer, use_pass_object_index=True, use_pass_combined=True), \
                _capture_passes(view_layer.name) as captured:
            bpy.ops.render.render()
    finally:
        for ob in objects:
            ob.pass_index = saved_index[ob.name]
    if "Combined" not in captured:
        raise ValueError("Cycles produced no render result (is the Cycles add-on enabled?)")
    try:
        id_map = rc.index_map(captured)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    rgb = rc.rgb8(captured)
    return ViewRender(rgb=np.ascontiguousarray(rgb), id_map=np.ascontiguousarray(id_map),
                      index_to_object=index_to_object, index_to_instance=index_to_instance)


def instance_label(instancer: str, index: int) -> str:
    """The name of one instance: ``"Scatter [3]"``; index -1 (the instancer's own geometry) is the instancer."""
    return instancer if index < 0 else f"{instancer} [{index}]"
