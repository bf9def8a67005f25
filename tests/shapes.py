"""A tiny, fast, bpy-free COCO dataset of drawn shapes, for tests of everything downstream of the generator.

It is written with pycocotools and OpenCV directly (not with our own core encoder) so that tests
of the core, the evaluator and the model do not depend on the code they check. Same seed, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CATEGORIES = [
    {"id": 1, "name": "disc", "supercategory": "shape"},
    {"id": 2, "name": "box", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
]


def draw_scene(rng: np.random.Generator, size: int, max_objects: int) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Return (rgb uint8 HxWx3, id map uint16 HxW, id -> category_id). Later shapes occlude earlier ones."""
    h = w = size
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = rng.integers(0, 80, size=3, dtype=np.uint8)
    ids = np.zeros((h, w), np.uint16)
    cats: dict[int, int] = {}
    n = int(rng.integers(1, max_objects + 1))
    for inst in range(1, n + 1):
        cat = int(rng.integers(1, 4))
        layer = np.zeros((h, w), np.uint8)
        cx, cy = (int(v) for v in rng.integers(size // 8, size - size // 8, size=2))
        r = int(rng.integers(max(3, size // 12), max(4, size // 4)))
        if cat == 1:
            cv2.circle(layer, (cx, cy), r, 1, thickness=-1)
        elif cat == 2:
            cv2.rectangle(layer, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, thickness=-1)
        else:
            pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(layer, [pts], 1)
        colour = rng.integers(90, 256, size=3, dtype=np.uint8)
        sel = layer.astype(bool)
        rgb[sel] = colour
        ids[sel] = inst
        cats[inst] = cat
    present = set(int(v) for v in np.unique(ids)) - {0}
    return rgb, ids, {k: v for k, v in cats.items() if k in present}


def make_shapes_dataset(root: str | Path, n_images: int = 8, size: int = 64, seed: int = 0,
                        max_objects: int = 5) -> Path:
    """Write images/*.png, masks/*.png and annotations.json under ``root``; return the JSON path."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for index in range(n_images):
        rng = np.random.default_rng([seed, index])
        rgb, ids, cats = draw_scene(rng, size, max_objects)
        name = f"{index:06d}.png"
        cv2.imwrite(str(root / "images" / name), rgb[..., ::-1])
        cv2.imwrite(str(root / "masks" / name), ids)
        image_id = index + 1
        images.append({"id": image_id, "file_name": f"images/{name}", "width": size, "height": size,
                       "seed": int(seed * 100003 + index)})
        for inst, cat in sorted(cats.items()):
            m = np.asfortranarray((ids == inst).astype(np.uint8))
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode("ascii")
            ys, xs = np.nonzero(m)
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                "segmentation": rle, "area": int(m.sum()),
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                "visible_fraction": 1.0,
            })
            ann_id += 1
    coco = {"info": {"description": "test shapes"}, "images": images, "annotations": annotations,
            "categories": CATEGORIES}
    out = root / "annotations.json"
    out.write_text(json.dumps(coco))
    return out
