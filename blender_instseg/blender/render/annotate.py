"""Turn one rendered scene into its per-image record: visible masks, amodal masks, hidden objects.

Visible masks come from the Object Index pass (exact ids at pixel centres). Amodal masks come
from ``amodal.py`` and are unioned with the visible mask (counted in ``amodal_fixups``), so a
visible mask is always a subset of its amodal mask. An object with no visible pixel gets no
annotation; it is listed in ``hidden`` with the reason ``outside_frame`` (its amodal mask has no
pixel in the frame) or ``occluded`` (it is in the frame but other objects cover all of it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from ...core.formats import coco
from ..scene.builder import BuiltScene
from . import amodal

log = logging.getLogger(__name__)


def too_little_visible_ids(hidden: list[dict[str, Any]]) -> list[int]:
    """Instance ids that ``build_annotations`` dropped for being too little visible."""
    return [h["instance_id"] for h in hidden if h["reason"] == "too_little_visible"]


@dataclass
class AmodalInputs:
    """All an image's amodal masks depend on: the camera and each object's mesh and world matrix."""

    cam: amodal.Camera
    objects: list[tuple[Any, np.ndarray]]  # (meshes.ShapeMesh, 4x4 world matrix) in instance order

    def same_as(self, other: "AmodalInputs") -> bool:
        a, b = self.cam, other.cam
        return ((a.width, a.height, a.clip_start) == (b.width, b.height, b.clip_start)
                and np.array_equal(a.world_to_camera, b.world_to_camera) and np.array_equal(a.projection, b.projection)
                and len(self.objects) == len(other.objects)
                and all(sa is sb and np.array_equal(wa, wb) for (sa, wa), (sb, wb) in zip(self.objects, other.objects)))


def amodal_inputs(built: BuiltScene) -> AmodalInputs:
    """The scene's amodal inputs as Blender has them now (evaluated matrices, this render's size)."""
    scene = bpy.context.scene
    depsgraph = bpy.context.evaluated_depsgraph_get()
    cam = amodal.camera_from_blender(scene, built.camera, depsgraph)
    return AmodalInputs(cam, [(so.shape_mesh, np.array(so.obj.evaluated_get(depsgraph).matrix_world, np.float64))
                              for so in built.objects])


def compute_amodal(inputs: AmodalInputs) -> list[amodal.AmodalResult]:
    """Every object's amodal mask (numpy only: safe off Blender's main thread)."""
    cam = inputs.cam
    return [amodal.mesh_amodal_mask(sm.verts, sm.tris, world, cam, sm.neighbours) for sm, world in inputs.objects]


def _stacked(results: list[amodal.AmodalResult], width: int, height: int) -> tuple[np.ndarray, list[bool]]:
    stack = np.zeros((len(results), height, width), bool)
    for k, res in enumerate(results):
        stack[k] = res.mask
    return stack, [res.truncated for res in results]


def amodal_masks(built: BuiltScene, width: int, height: int,
                 ahead: "AmodalAhead | None" = None) -> tuple[np.ndarray, list[bool]]:
    """(N, H, W) amodal masks in instance order and the truncation flag of each object; ``ahead``'s
    masks when they were computed for the scene as it is now."""
    inputs = amodal_inputs(built)
    cam = inputs.cam
    if (cam.width, cam.height) != (width, height):
        raise RuntimeError(f"camera frame {cam.width}x{cam.height} does not match the render {width}x{height}")
    results = ahead.take(inputs) if ahead is not None else None
    return _stacked(results if results is not None else compute_amodal(inputs), width, height)


class AmodalAhead:
    """Amodal masks computed in a background thread while Cycles renders (``start`` before a render,
    ``amodal_masks(..., ahead=)`` after it).

    Why: Cycles leaves Python's lock while it renders and keeps the cores only mostly busy, while
    the amodal masks are numpy work of one thread that otherwise waits for the render to end; for
    dense asset meshes they are a sizeable share of an image. The masks are used only when the
    camera, meshes and world matrices at annotation time equal those they were computed from (the
    hidden-object moves and lens set-up may change them in between), so the result is the same
    as computing them afterwards.
    """

    def __init__(self) -> None:
        self._pool: Any = None
        self._pending: tuple[AmodalInputs, Any] | None = None

    def start(self, built: BuiltScene) -> None:
        """Begin the masks of the scene as it stands (nothing new when those are already under way)."""
        inputs = amodal_inputs(built)
        if self._pending is not None and self._pending[0].same_as(inputs):
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="instseg-amodal")
        self._pending = (inputs, self._pool.submit(compute_amodal, inputs))

    def take(self, inputs: AmodalInputs) -> list[amodal.AmodalResult] | None:
        """The masks begun for ``inputs`` (waiting for them), or None when none were; forgets them."""
        pending, self._pending = self._pending, None
        if pending is None or not pending[0].same_as(inputs):
            return None
        return pending[1].result()


@dataclass
class Labelled:
    """What one annotation is about: its id, category and names (``shape`` None: not written)."""

    instance_id: int
    category_id: int
    object_name: str
    shape: str | None = None


def build_annotations(built: BuiltScene, id_map: np.ndarray, min_pixels: int = 1, min_fraction: float = 0.0,
                      ahead: AmodalAhead | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(annotations, hidden, amodal_fixups) for one image; instance ids are the objects' pass indices.

    An object with fewer than ``min_pixels`` visible pixels or a visible fraction below
    ``min_fraction`` goes to hidden[] with reason ``too_little_visible``; the caller clears its pixels from
    the id map (``too_little_visible_ids``), so no mask holds an id without an annotation.
    ``ahead``: amodal masks computed during the render (``AmodalAhead``).
    """
    h, w = id_map.shape
    labelled = [Labelled(so.instance_id, so.category_id, so.obj.name, so.shape) for so in built.objects]
    check_ids(labelled, id_map)
    stack, truncated = amodal_masks(built, w, h, ahead)
    return annotations_from_masks(labelled, id_map, stack, truncated, min_pixels, min_fraction)


def check_ids(labelled: list[Labelled], id_map: np.ndarray) -> None:
    """``RuntimeError`` when the id map holds an id that belongs to none of ``labelled``."""
    known = {item.instance_id for item in labelled}
    present = set(np.flatnonzero(np.bincount(id_map.ravel())).tolist()) - {0}
    stray = present - known
    if stray:
        raise RuntimeError(f"id map holds ids that belong to no instance: {sorted(stray)[:5]}")


def annotations_from_masks(labelled: list[Labelled], id_map: np.ndarray, stack: np.ndarray, truncated: list[bool],
                           min_pixels: int = 1, min_fraction: float = 0.0
                           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(annotations, hidden, amodal_fixups) from the id map and the (N, H, W) amodal ``stack`` of ``labelled``
    (in the same order; ``stack`` gets the visible pixels unioned in). Shared by the generator and
    annotate-scene, so both write the same annotation fields."""
    visible = {e.instance_id: e for e in coco.encode_id_map(id_map)}
    fixups = 0
    for k, item in enumerate(labelled):
        if item.instance_id in visible:
            vis = id_map == item.instance_id
            missing = vis & ~stack[k]
            n = int(missing.sum())
            if n:
                fixups += n
                stack[k] |= vis
    if fixups:
        log.debug("amodal masks: %d edge pixels taken from the visible masks", fixups)
    amodal_enc = coco.encode_masks(stack)
    annotations: list[dict[str, Any]] = []
    hidden: list[dict[str, Any]] = []
    for item, am, trunc in zip(labelled, amodal_enc, truncated):
        v = visible.get(item.instance_id)
        base: dict[str, Any] = {"instance_id": item.instance_id, "category_id": item.category_id,
                                "object_name": item.object_name}
        if item.shape is not None:
            base["shape"] = item.shape
        if v is None:
            hidden.append({**base, "reason": "outside_frame" if am.area == 0 else "occluded",
                           "amodal_area": am.area, "truncated": bool(trunc)})
            continue
        if v.area < min_pixels or v.area / am.area < min_fraction:
            hidden.append({**base, "reason": "too_little_visible", "visible_area": v.area,
                           "visible_fraction": v.area / am.area, "amodal_area": am.area, "truncated": bool(trunc)})
            continue
        ann: dict[str, Any] = {
            "instance_id": item.instance_id,
            "category_id": item.category_id,
            "segmentation": v.rle,
            "area": v.area,
            "bbox": v.bbox,
            "iscrowd": 0,
            "visible_fraction": v.area / am.area,
            "amodal_segmentation": am.rle,
            "amodal_bbox": am.bbox,
            "amodal_area": am.area,
            "truncated": bool(trunc),
            "object_name": item.object_name,
        }
        if item.shape is not None:
            ann["shape"] = item.shape
        annotations.append(ann)
    return annotations, hidden, fixups
