"""A drawn video for the core tests: discs moving over frames, one leaving the picture and coming back.

Written the way annotate-scene writes an animation (images/, masks/, records/ with ``video_id``,
``frame_index`` and ``track_id``, config.json), so merge, the VIS writer, validate and evaluate run
on real files without Blender.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from blender_instseg.core.formats import coco
from blender_instseg.core.formats.dataset import write_dataset_config, write_record

SIZE = 48
FRAMES = 8
CATEGORIES = [{"id": 1, "name": "disc", "supercategory": "object"}, {"id": 2, "name": "square", "supercategory": "object"}]
#: track id -> category id
TRACK_CATEGORY = {1: 1, 2: 2, 3: 1}


def frame_id_map(t: int) -> np.ndarray:
    """Track 1 slides right, track 2 stays, track 3 leaves on the left at frames 3-4 and comes back."""
    m = np.zeros((SIZE, SIZE), np.uint16)
    cv2.circle(m, (8 + 3 * t, 12), 6, 1, -1)
    m[28:40, 28:40] = 2
    if t not in (3, 4):
        cv2.circle(m, (10, 36), 5, 3, -1)
    return m


def make_video_dataset(root: Path) -> Path:
    """The video as a record dataset under ``root`` (not merged); returns ``root``."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_dataset_config(root, {"categories": CATEGORIES, "video": {"id": 1, "name": "drawn"}})
    for t in range(FRAMES):
        ids = frame_id_map(t)
        name = f"{t:06d}.png"
        cv2.imwrite(str(root / "images" / name), np.dstack([ids.astype(np.uint8) * 60] * 3))
        cv2.imwrite(str(root / "masks" / name), ids)
        annotations = [{"instance_id": e.instance_id, "track_id": e.instance_id,
                        "category_id": TRACK_CATEGORY[e.instance_id], "segmentation": e.rle, "area": e.area,
                        "bbox": e.bbox, "iscrowd": 0} for e in coco.encode_id_map(ids)]
        write_record(root, {"index": t, "file_name": f"images/{name}", "mask_file": f"masks/{name}",
                            "width": SIZE, "height": SIZE, "split": "train", "video_id": 1,
                            "frame_index": 10 + t, "annotations": annotations})
    return root
