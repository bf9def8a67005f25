"""The ``semantic`` format: ``semantic/<stem>.png``, the category id of every pixel, built from the id maps.

Background (ground + world) and pixels whose id has no annotation (none in generated data; a
warning) are 0. uint8, or uint16 when a category id exceeds 255: one dtype for the whole dataset
(per COCO file, and every COCO file of a dataset has the same categories). The
``export-panoptic`` command writes it too (``--semantic``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_bytes
from .dataset import load_coco
from .label_maps import (annotations_by_image, checked_id_map, coco_files, first_time, instance_table, lookup,
                         largest_category_id, output_name, png_bytes, read_id_map)

log = logging.getLogger(__name__)

SEMANTIC_DIR = "semantic"


def semantic_dtype(max_category_id: int) -> np.dtype:
    """uint8 when every category id fits, else uint16 (the PNG has to hold the largest id)."""
    if max_category_id > 0xFFFF:
        raise ValueError(f"category id {max_category_id} does not fit a 16-bit semantic map")
    return np.dtype(np.uint8 if max_category_id <= 0xFF else np.uint16)


def semantic_map(id_map: np.ndarray, anns: list[dict], *, dtype: Any = np.uint8, where: str = "image") -> np.ndarray:
    """Category id per pixel (background and unannotated ids 0) from an id map and its annotations."""
    ids = checked_id_map(id_map, where)
    inst, cats, _ = instance_table(anns, where)
    info = np.iinfo(dtype)
    if cats.size and cats.max() > info.max:
        raise ValueError(f"{where}: category id {cats.max()} does not fit {np.dtype(dtype).name}")
    return lookup(ids, inst, cats, where).astype(dtype)


def write_semantic_png(path: str | Path, semantic: np.ndarray) -> Path:
    """Write a uint8/uint16 semantic map as a single-channel PNG, atomically."""
    p = Path(path)
    return atomic_write_bytes(p, png_bytes(np.ascontiguousarray(semantic), p))


def write(dataset_root: Path) -> dict[str, Path]:
    """The ``semantic`` row of ``FORMATS``: ``semantic/<stem>.png`` for every image of a merged
    dataset; returns ``{"semantic": semantic/}``."""
    root, files = coco_files(dataset_root)
    done: dict[str, Any] = {}  # output name -> image id
    for path in files:
        data = load_coco(path)
        dtype = semantic_dtype(largest_category_id(data["categories"]))
        by_image = annotations_by_image(data)
        for image in sorted(data["images"], key=lambda im: im["id"]):
            name = output_name(image)
            where = f"{path.name}: image {image['id']}"
            if first_time(done, name, image["id"], where):
                sem = semantic_map(read_id_map(root, image), by_image.get(image["id"], []), dtype=dtype, where=where)
                write_semantic_png(root / SEMANTIC_DIR / name, sem)
        log.info("%s: %d images -> %s/", path.name, len(data["images"]), SEMANTIC_DIR)
    return {SEMANTIC_DIR: root / SEMANTIC_DIR}
