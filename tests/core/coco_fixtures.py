"""Builders for the core tests: id maps with awkward shapes, and record datasets on disk.

Record datasets are written the way the generator writes them (images/, masks/, records/,
config.json), from the drawn scenes of tests/shapes.py, so merge/validate/export run on real files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from blender_instseg.core.formats import coco
from blender_instseg.core.formats.dataset import write_dataset_config, write_record
from tests.shapes import CATEGORIES, draw_scene


def reference_rle(mask: np.ndarray) -> dict:
    """pycocotools' own encoding of one binary mask, counts as str."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def reference_bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def awkward_id_map(size: int = 96) -> np.ndarray:  # size >= 96
    """Holes, an island in a hole, disjoint parts, border/corner contact, 1-pixel and 2-pixel objects."""
    m = np.zeros((size, size), np.uint16)
    cv2.circle(m, (30, 30), 18, 1, -1)  # ring: disc with a hole ...
    cv2.circle(m, (30, 30), 8, 0, -1)
    cv2.circle(m, (30, 30), 3, 2, -1)  # ... and an island inside the hole
    m[60:70, 5:15] = 3  # two disjoint parts of one id
    m[75:90, 20:26] = 3
    m[0:10, 50:70] = 4  # touches the top border
    m[size - 12:size, size - 12:size] = 5  # bottom-right corner
    m[40:60, size - 4:size] = 6  # right border, thin
    m[50, 50] = 7  # one pixel
    m[80, 60:62] = 8  # two pixels
    m[85, 70] = 9  # two diagonal pixels (8-connected)
    m[86, 71] = 9
    m[5:8, 90:92] = 10
    return m


def random_id_map(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """Overlapping discs, rotated ellipses (some with holes) and polygons; later ones occlude."""
    m = np.zeros((h, w), np.uint16)
    for i in range(1, n + 1):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        r = int(rng.integers(3, max(4, min(h, w) // 5)))
        kind = i % 3
        if kind == 0:
            cv2.circle(m, c, r, i, -1)
            cv2.circle(m, c, r // 3, 0, -1)
        elif kind == 1:
            cv2.ellipse(m, c, (r, r // 2 + 1), int(rng.integers(0, 180)), 0, 360, i, -1)
        else:
            pts = (np.array(c) + rng.integers(-r, r + 1, size=(5, 2))).astype(np.int32)
            cv2.fillPoly(m, [pts], i)
    return m


def _scene_record(index: int, rng: np.random.Generator, size: int, split: str | None, root: Path,
                  amodal: bool) -> dict:
    rgb, ids, cats = draw_scene(rng, size, max_objects=5)
    name = f"{index:06d}.png"
    cv2.imwrite(str(root / "images" / name), rgb[..., ::-1])
    cv2.imwrite(str(root / "masks" / name), ids)
    annotations = []
    for enc in coco.encode_id_map(ids):
        ann = {"instance_id": enc.instance_id, "category_id": cats[enc.instance_id], "segmentation": enc.rle,
               "area": enc.area, "bbox": enc.bbox, "iscrowd": 0, "object_name": f"shape.{enc.instance_id:03d}"}
        if amodal:
            # amodal = visible plus a band to the right that nothing else claims
            vis = ids == enc.instance_id
            full = vis.copy()
            full[:, 1:] |= vis[:, :-1]
            (a_enc,) = coco.encode_masks(full[None])
            ann.update({"visible_fraction": enc.area / a_enc.area, "amodal_segmentation": a_enc.rle,
                        "amodal_bbox": a_enc.bbox, "amodal_area": a_enc.area, "truncated": False})
        annotations.append(ann)
    record = {"index": index, "seed": int(1000 + index), "file_name": f"images/{name}", "width": size,
              "height": size, "mask_file": f"masks/{name}", "annotations": annotations, "hidden": []}
    if split is not None:
        record["split"] = split
    return record


def make_record_dataset(root: str | Path, indices: Iterable[int], *, size: int = 48, seed: int = 0,
                        splits: bool = True, amodal: bool = True, empty: Iterable[int] = ()) -> Path:
    """Write config.json, images/, masks/ and records/ for ``indices`` (in the given order)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    write_dataset_config(root, {"categories": CATEGORIES, "version": "test"})
    empty = set(empty)
    for index in indices:
        rng = np.random.default_rng([seed, index])
        split = ("train", "val")[index % 3 == 2] if splits else None
        record = _scene_record(index, rng, size, split, root, amodal)
        if index in empty:
            record["annotations"] = []
            cv2.imwrite(str(root / "masks" / f"{index:06d}.png"), np.zeros((size, size), np.uint16))
        write_record(root, record)
    return root
