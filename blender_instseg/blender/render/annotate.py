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


def amodal_masks(built: BuiltScene, width: int, height: int) -> tuple[np.ndarray, list[bool]]:
    """(N, H, W) amodal masks in instance order and the truncation flag of each object."""
    scene = bpy.context.scene
    depsgraph = bpy.context.evaluated_depsgraph_get()
    cam = amodal.camera_from_blender(scene, built.camera, depsgraph)
    if (cam.width, cam.height) != (width, height):
        raise RuntimeError(f"camera frame {cam.width}x{cam.height} does not match the render {width}x{height}")
    stack = np.zeros((len(built.objects), height, width), bool)
    truncated: list[bool] = []
    for k, so in enumerate(built.objects):
        sm = so.shape_mesh
        ev = so.obj.evaluated_get(depsgraph)
        res = amodal.mesh_amodal_mask(sm.verts, sm.tris, np.array(ev.matrix_world, np.float64), cam, sm.neighbours)
        stack[k] = res.mask
        truncated.append(res.truncated)
    return stack, truncated


@dataclass
class Labelled:
    """What one annotation is about: its id, category and names (``shape`` None: not written)."""

    instance_id: int
    category_id: int
    object_name: str
    shape: str | None = None


def build_annotations(built: BuiltScene, id_map: np.ndarray, min_pixels: int = 1,
                      min_fraction: float = 0.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(annotations, hidden, amodal_fixups) for one image; instance ids are the objects' pass indices.

    An object with fewer than ``min_pixels`` visible pixels or a visible fraction below
    ``min_fraction`` goes to hidden[] with reason ``too_little_visible``; the caller clears its pixels from
    the id map (``too_little_visible_ids``), so no mask holds an id without an annotation.
    """
    h, w = id_map.shape
    labelled = [Labelled(so.instance_id, so.category_id, so.obj.name, so.shape) for so in built.objects]
    check_ids(labelled, id_map)
    stack, truncated = amodal_masks(built, w, h)
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
