"""Semantic maps and COCO panoptic outputs built from the instance-id maps; ``export-panoptic`` command.

Both outputs are pure functions of an image's id map (``masks/*.png``, pass index per pixel, 0 =
ground and world) and its annotations (``instance_id -> category_id``), so they are built here,
without bpy, for a freshly generated dataset or for an existing one, with no re-render:

* ``semantic/<stem>.png``: category id per pixel, background 0; uint8 (uint16 when a category id
  exceeds 255), one dtype for the whole dataset.
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

Pixels whose id has no annotation (none in generated data) become VOID in the panoptic PNG and 0
in the semantic map, with a warning.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .coco import encode_id_map
from .dataset import ANNOTATIONS_FILE, load_coco
from .fileio import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

#: segment id of the background stuff segment: one past the largest 16-bit instance id
BACKGROUND_SEGMENT_ID = 1 << 16
#: the largest id the RGB encoding holds
MAX_SEGMENT_ID = (1 << 24) - 1
BACKGROUND_NAME = "background"
PANOPTIC_DIR = "panoptic"
SEMANTIC_DIR = "semantic"
PANOPTIC_PREFIX = "panoptic"
#: the part of the COCO file names that the panoptic file names replace
ANNOTATIONS_PREFIX = Path(ANNOTATIONS_FILE).stem


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


def output_name(image: dict) -> str:
    """The semantic / panoptic PNG name of a COCO image: its file stem + ``.png``.

    Sharing the image's stem is what detectron2's panoptic loader relies on (it finds the image
    from the panoptic file name).
    """
    name = image.get("file_name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"image {image.get('id')!r} has no file_name")
    return Path(name).stem + ".png"


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


def read_label_png(path: str | Path, what: str) -> np.ndarray:
    """Decode a single-channel 8/16-bit PNG (id map, semantic map); one-line ``ValueError`` otherwise."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{what} is not a single-channel 8/16-bit PNG: {path}")
    return img


def _png_bytes(arr: np.ndarray, path: Path) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - OpenCV encodes every uint8/uint16 array
        raise ValueError(f"PNG encoding failed for {path}")
    return buf.tobytes()


def write_panoptic_png(path: str | Path, segments: np.ndarray) -> Path:
    """Write segment ids as a panoptic RGB PNG, atomically."""
    p = Path(path)
    return atomic_write_bytes(p, _png_bytes(np.ascontiguousarray(id_to_rgb(segments)[..., ::-1]), p))


def write_semantic_png(path: str | Path, semantic: np.ndarray) -> Path:
    """Write a uint8/uint16 semantic map as a single-channel PNG, atomically."""
    p = Path(path)
    return atomic_write_bytes(p, _png_bytes(np.ascontiguousarray(semantic), p))


# --------------------------------------------------------------------------------------------
# categories


def semantic_dtype(max_category_id: int) -> np.dtype:
    """uint8 when every category id fits, else uint16 (the PNG has to hold the largest id)."""
    if max_category_id > 0xFFFF:
        raise ValueError(f"category id {max_category_id} does not fit a 16-bit semantic map")
    return np.dtype(np.uint8 if max_category_id <= 0xFF else np.uint16)


def _colours(n: int) -> np.ndarray:
    """``n`` distinct saturated RGB colours (golden-ratio hue steps), deterministic."""
    hue = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hue, np.full(n, 200, np.uint8), np.full(n, 230, np.uint8)], axis=-1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def stuff_category_id(categories: list[dict]) -> int:
    """Id of the background stuff category: one past the largest thing category id."""
    ids = [c.get("id") for c in categories]
    good = [i for i in ids if isinstance(i, int) and not isinstance(i, bool) and i > 0]
    if not ids or len(good) != len(ids):
        raise ValueError(f"category ids must be positive integers, got {ids}")
    return max(good) + 1


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


def _instance_table(anns: list[dict], where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(instance ids, category ids, iscrowd) of one image's annotations, sorted by instance id."""
    rows: list[tuple[int, int, int]] = []
    for a in anns:
        iid, cat = a.get("instance_id"), a.get("category_id")
        if not isinstance(iid, int) or isinstance(iid, bool) or not 0 < iid < BACKGROUND_SEGMENT_ID:
            raise ValueError(f"{where}: annotation {a.get('id')!r} needs an integer instance_id in "
                             f"1..{BACKGROUND_SEGMENT_ID - 1}, got {iid!r}")
        if not isinstance(cat, int) or isinstance(cat, bool) or cat <= 0:
            raise ValueError(f"{where}: annotation {a.get('id')!r} has category_id {cat!r}")
        rows.append((iid, cat, int(bool(a.get("iscrowd", 0)))))
    rows.sort()
    table = np.array(rows, np.int64).reshape(-1, 3)
    if np.any(table[1:, 0] == table[:-1, 0]):
        raise ValueError(f"{where}: two annotations share an instance_id")
    return table[:, 0], table[:, 1], table[:, 2]


def _checked_id_map(id_map: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(id_map)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{where}: id map must be a 2-D integer array, got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= BACKGROUND_SEGMENT_ID):
        raise ValueError(f"{where}: id map values must be in 0..{BACKGROUND_SEGMENT_ID - 1}")
    return arr


def _lookup(id_map: np.ndarray, keys: np.ndarray, values: np.ndarray, where: str) -> np.ndarray:
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


def semantic_map(id_map: np.ndarray, anns: list[dict], *, dtype: Any = np.uint8, where: str = "image") -> np.ndarray:
    """Category id per pixel (background and unannotated ids 0) from an id map and its annotations."""
    ids = _checked_id_map(id_map, where)
    inst, cats, _ = _instance_table(anns, where)
    info = np.iinfo(dtype)
    if cats.size and cats.max() > info.max:
        raise ValueError(f"{where}: category id {cats.max()} does not fit {np.dtype(dtype).name}")
    return _lookup(ids, inst, cats, where).astype(dtype)


def panoptic_segments(id_map: np.ndarray, anns: list[dict], stuff_category: int,
                      *, where: str = "image") -> tuple[np.ndarray, list[dict]]:
    """(segment-id map, segments_info) of one image.

    Thing segment id = instance_id; id-map 0 -> ``BACKGROUND_SEGMENT_ID`` (category
    ``stuff_category``); ids without an annotation -> 0 (VOID). ``area`` and ``bbox`` come from the
    segment map itself (pycocotools' tight ``[x, y, w, h]``, integers), as panopticapi measures them.
    """
    ids = _checked_id_map(id_map, where)
    inst, cats, crowd = _instance_table(anns, where)
    segments = _lookup(ids, inst, inst, where)
    segments[ids == 0] = BACKGROUND_SEGMENT_ID
    category = dict(zip(inst.tolist(), cats.tolist()))
    iscrowd = dict(zip(inst.tolist(), crowd.tolist()))
    info: list[dict] = []
    for enc in encode_id_map(segments):
        sid = enc.instance_id
        stuff = sid == BACKGROUND_SEGMENT_ID
        info.append({"id": sid, "category_id": stuff_category if stuff else category[sid],
                     "area": enc.area, "bbox": [int(v) for v in enc.bbox],
                     "iscrowd": 0 if stuff else iscrowd[sid]})
    return segments, info


# --------------------------------------------------------------------------------------------
# a dataset


def _annotation_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob(f"{ANNOTATIONS_PREFIX}*.json") if p.is_file())


def _read_id_map(root: Path, image: dict) -> np.ndarray:
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


def export_panoptic(dataset_root: str | Path, *, semantic: bool = True, panoptic: bool = True) -> dict[str, Path]:
    """Write ``semantic/`` and/or ``panoptic/`` + ``panoptic*.json`` for a merged dataset.

    Returns ``{"semantic": semantic/, "panoptic": panoptic.json, "panoptic_<split>": ...}`` for what
    was written. Each image is built once even when it appears in several ``annotations*.json``.
    """
    root = Path(dataset_root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not (semantic or panoptic):
        raise ValueError("nothing to export: choose semantic and/or panoptic")
    files = _annotation_files(root)
    if not files:
        raise FileNotFoundError(f"no {ANNOTATIONS_FILE} in {root} (run merge first)")
    written: dict[str, Path] = {}
    done: dict[str, tuple[Any, list[dict]]] = {}  # output name -> (image id, segments_info)
    for path in files:
        data = load_coco(path)
        categories = data["categories"]
        stuff = stuff_category_id(categories)
        dtype = semantic_dtype(stuff - 1)
        by_image: dict[Any, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann.get("image_id"), []).append(ann)
        pan_annotations: list[dict] = []
        for image in sorted(data["images"], key=lambda im: im["id"]):
            name = output_name(image)
            where = f"{path.name}: image {image['id']}"
            if name in done:
                if done[name][0] != image["id"]:
                    raise ValueError(f"{where}: another image already writes {name} (file stems must be unique)")
            else:
                id_map = _read_id_map(root, image)
                anns = by_image.get(image["id"], [])
                info: list[dict] = []
                if semantic:
                    write_semantic_png(root / SEMANTIC_DIR / name, semantic_map(id_map, anns, dtype=dtype, where=where))
                if panoptic:
                    segments, info = panoptic_segments(id_map, anns, stuff, where=where)
                    write_panoptic_png(root / PANOPTIC_DIR / name, segments)
                done[name] = (image["id"], info)
            pan_annotations.append({"image_id": image["id"], "file_name": name, "segments_info": done[name][1]})
        if panoptic:
            obj: dict[str, Any] = {"info": data["info"]} if "info" in data else {}
            obj.update(images=data["images"], annotations=pan_annotations, categories=panoptic_categories(categories))
            out = atomic_write_json(panoptic_file_for(path), obj)
            written[out.stem] = out
        log.info("%s: %d images -> %s", path.name, len(data["images"]),
                 " + ".join(k for k, on in (("semantic/", semantic), (f"{PANOPTIC_DIR}/", panoptic)) if on))
    if panoptic:
        # split files of an earlier export whose annotations file is gone would mislead consumers
        for stale in root.glob(f"{PANOPTIC_PREFIX}*.json"):
            if stale not in written.values():
                log.info("removing stale %s", stale)
                stale.unlink()
    if semantic:
        written[SEMANTIC_DIR] = root / SEMANTIC_DIR
    return written


# --------------------------------------------------------------------------------------------
# CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, metavar="DATASET",
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
