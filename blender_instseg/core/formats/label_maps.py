"""What the per-pixel formats (``semantic``, ``panoptic``) share: the instance-id maps they are built from.

Both are pure functions of an image's id map (``masks/*.png``, pass index per pixel, 0 = ground
and world) and its annotations (``instance_id -> category_id``), so they are built without bpy,
for a freshly generated dataset or for an existing one, with no re-render. Each writes one PNG
per image, named after the image's file stem; an image listed in several ``annotations*.json``
(the all-images file and its split file) is built once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .dataset import ANNOTATIONS_FILE

log = logging.getLogger(__name__)

#: one past the largest id a 16-bit instance-id map can hold
ID_MAP_LIMIT = 1 << 16
#: the part of the COCO file names that derived file names (``panoptic*.json``) replace
ANNOTATIONS_PREFIX = Path(ANNOTATIONS_FILE).stem


def output_name(image: dict) -> str:
    """The semantic / panoptic PNG name of a COCO image: its file stem + ``.png``.

    Sharing the image's stem is what detectron2's panoptic loader relies on (it finds the image
    from the panoptic file name).
    """
    name = image.get("file_name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"image {image.get('id')!r} has no file_name")
    return Path(name).stem + ".png"


def read_label_png(path: str | Path, what: str) -> np.ndarray:
    """Decode a single-channel 8/16-bit PNG (id map, semantic map); one-line ``ValueError`` otherwise."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{what} is not a single-channel 8/16-bit PNG: {path}")
    return img


def png_bytes(arr: np.ndarray, path: Path) -> bytes:
    """``arr`` encoded as PNG (``path`` only names it in the error)."""
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - OpenCV encodes every uint8/uint16 array
        raise ValueError(f"PNG encoding failed for {path}")
    return buf.tobytes()


def largest_category_id(categories: list[dict]) -> int:
    """The largest category id; ``ValueError`` unless every id is a positive integer."""
    ids = [c.get("id") for c in categories]
    good = [i for i in ids if isinstance(i, int) and not isinstance(i, bool) and i > 0]
    if not ids or len(good) != len(ids):
        raise ValueError(f"category ids must be positive integers, got {ids}")
    return max(good)


# --------------------------------------------------------------------------------------------
# one image


def instance_table(anns: list[dict], where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(instance ids, category ids, iscrowd) of one image's annotations, sorted by instance id."""
    rows: list[tuple[int, int, int]] = []
    for a in anns:
        iid, cat = a.get("instance_id"), a.get("category_id")
        if not isinstance(iid, int) or isinstance(iid, bool) or not 0 < iid < ID_MAP_LIMIT:
            raise ValueError(f"{where}: annotation {a.get('id')!r} needs an integer instance_id in "
                             f"1..{ID_MAP_LIMIT - 1}, got {iid!r}")
        if not isinstance(cat, int) or isinstance(cat, bool) or cat <= 0:
            raise ValueError(f"{where}: annotation {a.get('id')!r} has category_id {cat!r}")
        rows.append((iid, cat, int(bool(a.get("iscrowd", 0)))))
    rows.sort()
    table = np.array(rows, np.int64).reshape(-1, 3)
    if np.any(table[1:, 0] == table[:-1, 0]):
        raise ValueError(f"{where}: two annotations share an instance_id")
    return table[:, 0], table[:, 1], table[:, 2]


def checked_id_map(id_map: np.ndarray, where: str) -> np.ndarray:
    """``id_map`` as given, after checking it is a 2-D integer map of 16-bit ids."""
    arr = np.asarray(id_map)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{where}: id map must be a 2-D integer array, got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= ID_MAP_LIMIT):
        raise ValueError(f"{where}: id map values must be in 0..{ID_MAP_LIMIT - 1}")
    return arr


def lookup(id_map: np.ndarray, keys: np.ndarray, values: np.ndarray, where: str) -> np.ndarray:
    """``values[k]`` at every pixel whose id is ``keys[k]``, 0 elsewhere (a lookup table over ids)."""
    top = int(id_map.max()) if id_map.size else 0
    lut = np.zeros(max(top, int(keys.max()) if keys.size else 0) + 1, np.int64)
    lut[keys] = values
    out = lut[id_map]
    known = np.zeros_like(lut, dtype=bool)
    known[keys] = True
    known[0] = True
    unknown = np.flatnonzero(~known[: top + 1])
    if unknown.size:
        present = unknown[np.bincount(id_map.ravel(), minlength=top + 1)[unknown] > 0]
        if present.size:
            log.warning("%s: ids %s in the id map have no annotation (VOID / 0)", where, present[:10].tolist())
    return out


# --------------------------------------------------------------------------------------------
# a dataset


def coco_files(dataset_root: str | Path) -> tuple[Path, list[Path]]:
    """(root, its ``annotations*.json``); one-line errors when the folder or the merged files are missing."""
    root = Path(dataset_root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    files = sorted(p for p in root.glob(f"{ANNOTATIONS_PREFIX}*.json") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no {ANNOTATIONS_FILE} in {root} (run merge first)")
    return root, files


def annotations_by_image(data: dict) -> dict[Any, list[dict]]:
    """A COCO file's annotations grouped by ``image_id``."""
    by_image: dict[Any, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    return by_image


def first_time(done: dict[str, Any], name: str, image_id: Any, where: str) -> bool:
    """True the first time output ``name`` comes up (and record ``image_id`` as its image); False
    when the same image comes up again (another split file); ``ValueError`` for another image."""
    if name in done:
        if done[name] != image_id:
            raise ValueError(f"{where}: another image already writes {name} (file stems must be unique)")
        return False
    done[name] = image_id
    return True


def read_id_map(root: Path, image: dict) -> np.ndarray:
    """The instance-id map of a COCO image (its ``mask_file``), checked against the image size."""
    rel = image.get("mask_file")
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"image {image.get('id')!r} has no mask_file: semantic/panoptic outputs are built "
                         "from the instance-id maps")
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"image {image.get('id')!r}: mask_file not found: {path}")
    id_map = read_label_png(path, "mask_file")
    if id_map.shape != (int(image["height"]), int(image["width"])):
        raise ValueError(f"image {image.get('id')!r}: {path} is {id_map.shape[1]}x{id_map.shape[0]}, "
                         f"the image is {image['width']}x{image['height']}")
    return id_map
