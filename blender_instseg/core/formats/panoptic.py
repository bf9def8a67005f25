"""The ``panoptic`` format (COCO panoptic, built from the instance-id maps) and the ``export-panoptic`` command.

Like ``semantic``, a pure function of each image's id map and annotations (``label_maps``):

* ``panoptic/<stem>.png``: COCO panoptic PNG, RGB with segment id = R + 256 G + 256^2 B, 0 = VOID.
  A thing segment's id IS its annotation's ``instance_id`` (so panoptic ids match the instance
  ids and the id map). The background (ground + world, id 0 in the id map) is one stuff segment
  with id ``BACKGROUND_SEGMENT_ID`` = 65536, one past anything a 16-bit id map can hold, so it can
  never collide with an instance id and is the same in every image.
* ``panoptic.json`` (+ ``panoptic_<split>.json``, one per ``annotations*.json``): ``images``
  (copied from the COCO file), ``annotations`` (one per image: ``image_id``, ``file_name``
  relative to ``panoptic/``, ``segments_info`` with ``id, category_id, area, bbox, iscrowd``, area
  and tight bbox measured on the PNG as panopticapi does) and ``categories``: the thing categories
  with ``isthing: 1`` plus one stuff category ``background`` (``isthing: 0``, id = max thing id + 1),
  each with a ``color``.

Pixels whose id has no annotation (none in generated data) become VOID, with a warning.

``export-panoptic`` writes this format and ``semantic`` (both unless one is chosen), for an
existing merged dataset.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..cliargs import path_arg
from ..fileio import atomic_write_bytes, atomic_write_json
from . import coco
from . import semantic as semantic_format
from .dataset import load_coco
from .label_maps import (ANNOTATIONS_PREFIX, ID_MAP_LIMIT, annotations_by_image, checked_id_map, coco_files,
                         first_time, instance_table, largest_category_id, lookup, output_name, png_bytes, read_id_map)

log = logging.getLogger(__name__)

#: segment id of the background stuff segment: one past the largest 16-bit instance id
BACKGROUND_SEGMENT_ID = ID_MAP_LIMIT
#: the largest id the RGB encoding holds
MAX_SEGMENT_ID = (1 << 24) - 1
BACKGROUND_NAME = "background"
PANOPTIC_DIR = "panoptic"
PANOPTIC_PREFIX = "panoptic"


# --------------------------------------------------------------------------------------------
# encodings and names


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids (H, W) -> uint8 RGB (H, W, 3) with id = R + 256 G + 256^2 B (panopticapi's id2rgb)."""
    arr = np.asarray(ids)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"segment ids must be integers, got dtype {arr.dtype}")
    a = arr.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must be in 0..{MAX_SEGMENT_ID}, got {a.min()}..{a.max()}")
    return np.stack([a & 0xFF, (a >> 8) & 0xFF, (a >> 16) & 0xFF], axis=-1).astype(np.uint8)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> int64 segment ids (panopticapi's rgb2id)."""
    arr = np.asarray(rgb)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"RGB array must end in 3 channels, got shape {arr.shape}")
    a = arr.astype(np.int64)
    return a[..., 0] + (a[..., 1] << 8) + (a[..., 2] << 16)


def panoptic_file_for(coco_file: str | Path) -> Path:
    """``annotations.json`` -> ``panoptic.json``, ``annotations_val.json`` -> ``panoptic_val.json`` (same folder)."""
    p = Path(coco_file)
    if not p.name.startswith(ANNOTATIONS_PREFIX):
        raise ValueError(f"not an annotations*.json file name: {p.name}")
    return p.with_name(PANOPTIC_PREFIX + p.name[len(ANNOTATIONS_PREFIX):])


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """Decode a panoptic PNG to int64 segment ids; one-line ``ValueError`` unless it is 8-bit RGB."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"not an 8-bit RGB PNG: {path}")
    return rgb_to_id(img[..., ::-1])


def write_panoptic_png(path: str | Path, segments: np.ndarray) -> Path:
    """Write segment ids as a panoptic RGB PNG, atomically."""
    p = Path(path)
    return atomic_write_bytes(p, png_bytes(np.ascontiguousarray(id_to_rgb(segments)[..., ::-1]), p))


# --------------------------------------------------------------------------------------------
# categories


def _colours(n: int) -> np.ndarray:
    """``n`` distinct saturated RGB colours (golden-ratio hue steps), deterministic."""
    hue = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hue, np.full(n, 200, np.uint8), np.full(n, 230, np.uint8)], axis=-1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def stuff_category_id(categories: list[dict]) -> int:
    """Id of the background stuff category: one past the largest thing category id."""
    return largest_category_id(categories) + 1


def panoptic_categories(categories: list[dict]) -> list[dict]:
    """The COCO categories as things (``isthing: 1``) plus the background stuff category, with colours."""
    things = sorted(categories, key=lambda c: int(c["id"]))
    colours = _colours(len(things)).tolist()
    out = [{"id": int(c["id"]), "name": str(c["name"]), "supercategory": str(c.get("supercategory", "object")),
            "isthing": 1, "color": colour} for c, colour in zip(things, colours)]
    if any(c["name"] == BACKGROUND_NAME for c in out):
        raise ValueError(f"a thing category is named {BACKGROUND_NAME!r}, the name of the stuff category")
    out.append({"id": stuff_category_id(categories), "name": BACKGROUND_NAME, "supercategory": BACKGROUND_NAME,
                "isthing": 0, "color": [128, 128, 128]})
    return out


# --------------------------------------------------------------------------------------------
# one image


def panoptic_segments(id_map: np.ndarray, anns: list[dict], stuff_category: int,
                      *, where: str = "image") -> tuple[np.ndarray, list[dict]]:
    """(segment-id map, segments_info) of one image.

    Thing segment id = instance_id; id-map 0 -> ``BACKGROUND_SEGMENT_ID`` (category
    ``stuff_category``); ids without an annotation -> 0 (VOID). ``area`` and ``bbox`` come from the
    segment map itself (pycocotools' tight ``[x, y, w, h]``, integers), as panopticapi measures them.
    """
    ids = checked_id_map(id_map, where)
    inst, cats, crowd = instance_table(anns, where)
    segments = lookup(ids, inst, inst, where)
    segments[ids == 0] = BACKGROUND_SEGMENT_ID
    category = dict(zip(inst.tolist(), cats.tolist()))
    iscrowd = dict(zip(inst.tolist(), crowd.tolist()))
    info: list[dict] = []
    for enc in coco.encode_id_map(segments):
        sid = enc.instance_id
        stuff = sid == BACKGROUND_SEGMENT_ID
        info.append({"id": sid, "category_id": stuff_category if stuff else category[sid],
                     "area": enc.area, "bbox": [int(v) for v in enc.bbox],
                     "iscrowd": 0 if stuff else iscrowd[sid]})
    return segments, info


# --------------------------------------------------------------------------------------------
# a dataset


def write(dataset_root: Path) -> dict[str, Path]:
    """The ``panoptic`` row of ``FORMATS``: ``panoptic/<stem>.png`` and ``panoptic*.json`` (one per
    ``annotations*.json``) for a merged dataset.

    Returns ``{"panoptic": panoptic.json, "panoptic_<split>": ...}``. ``panoptic*.json`` files whose
    COCO file is gone (an earlier export with other splits) are removed.
    """
    root, files = coco_files(dataset_root)
    written: dict[str, Path] = {}
    done: dict[str, Any] = {}  # output name -> image id
    infos: dict[str, list[dict]] = {}  # output name -> segments_info
    for path in files:
        data = load_coco(path)
        categories = data["categories"]
        stuff = stuff_category_id(categories)
        by_image = annotations_by_image(data)
        pan_annotations: list[dict] = []
        for image in sorted(data["images"], key=lambda im: im["id"]):
            name = output_name(image)
            where = f"{path.name}: image {image['id']}"
            if first_time(done, name, image["id"], where):
                segments, infos[name] = panoptic_segments(read_id_map(root, image), by_image.get(image["id"], []),
                                                          stuff, where=where)
                write_panoptic_png(root / PANOPTIC_DIR / name, segments)
            pan_annotations.append({"image_id": image["id"], "file_name": name, "segments_info": infos[name]})
        obj: dict[str, Any] = {"info": data["info"]} if "info" in data else {}
        obj.update(images=data["images"], annotations=pan_annotations, categories=panoptic_categories(categories))
        out = atomic_write_json(panoptic_file_for(path), obj)
        written[out.stem] = out
        log.info("%s: %d images -> %s/", path.name, len(data["images"]), PANOPTIC_DIR)
    # split files of an earlier export whose annotations file is gone would mislead consumers
    for stale in root.glob(f"{PANOPTIC_PREFIX}*.json"):
        if stale not in written.values():
            log.info("removing stale %s", stale)
            stale.unlink()
    return written


def export_panoptic(dataset_root: str | Path, *, semantic: bool = True, panoptic: bool = True) -> dict[str, Path]:
    """The ``export-panoptic`` command: ``panoptic/`` + ``panoptic*.json`` and/or ``semantic/`` for a merged dataset.

    Returns what was written: ``{"panoptic": panoptic.json, "panoptic_<split>": ..., "semantic": semantic/}``.
    """
    root = Path(dataset_root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not (semantic or panoptic):
        raise ValueError("nothing to export: choose semantic and/or panoptic")
    written: dict[str, Path] = {}
    if panoptic:
        written.update(write(root))
    if semantic:
        written.update(semantic_format.write(root))
    return written


# --------------------------------------------------------------------------------------------
# CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=path_arg, metavar="DATASET",
                        help="merged dataset folder (annotations*.json + masks/ id maps)")
    parser.add_argument("--semantic", action="store_true",
                        help="write semantic/<stem>.png (category per pixel, background 0)")
    parser.add_argument("--panoptic", action="store_true",
                        help="write panoptic/<stem>.png + panoptic*.json (COCO panoptic format)")
    parser.epilog = "With neither --semantic nor --panoptic, both are written."


def run(args: argparse.Namespace) -> int:
    both = not (args.semantic or args.panoptic)
    try:
        written = export_panoptic(args.dataset, semantic=both or args.semantic, panoptic=both or args.panoptic)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed COCO content: {exc!r}") from None
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
