"""Ground truth and predictions for evaluation: loaded, checked and normalised to compressed RLE.

pycocotools' C code trusts RLE strings and will read or write out of bounds on a malformed one,
so every input is checked here before pycocotools sees it: every ``counts`` string is parsed
(vectorised, all predictions at once) and must describe exactly ``height * width`` pixels;
polygons and uncompressed RLE are converted; ids must refer to known images and categories.
Errors are ``InputError`` with a one-line message meant for a person.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..fileio import read_json
from ..formats.rle_counts import check_rle_counts


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """pycocotools prints progress on stdout; our stdout belongs to the report or the JSON-lines protocol."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _copy_items(items: list) -> list:
    """Copy a list of annotation dicts two levels deep (the dicts and their segmentation dict).

    pycocotools and our checks write into annotations; the caller's data must stay untouched.
    That is all that is written, so this is enough, and much cheaper than ``copy.deepcopy``.
    """
    out = []
    for item in items:
        if isinstance(item, dict):
            item = dict(item)
            if isinstance(item.get("segmentation"), dict):
                item["segmentation"] = dict(item["segmentation"])
        out.append(item)
    return out


class InputError(ValueError):
    """Bad ground truth or predictions; the message is one line meant for a person."""


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _normalise_segmentations(items: list[dict], images: dict[int, dict], what: str) -> None:
    """Turn every ``segmentation`` into a compressed RLE with str counts, checking it on the way.

    Polygons and uncompressed RLE are converted with pycocotools; compressed strings are checked
    for well-formedness and for the image's size. Raises InputError naming the first bad item.
    """
    str_idx: list[int] = []
    for i, item in enumerate(items):
        seg = item.get("segmentation")
        img = images[item["image_id"]]
        h, w = int(img["height"]), int(img["width"])
        where = f"{what} {i} (image_id {item['image_id']})"
        if isinstance(seg, list):
            polys = [p for p in seg if isinstance(p, list)]
            if len(polys) != len(seg) or not polys or any(
                    len(p) < 6 or len(p) % 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in p)
                    for p in polys):
                raise InputError(f"{where}: polygon segmentation must be lists of >= 3 (x, y) points")
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
            rle["counts"] = rle["counts"].decode("ascii")
            item["segmentation"] = rle
            continue
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            raise InputError(f"{where}: segmentation must be an RLE dict with 'size' and 'counts' (or polygons)")
        size = seg["size"]
        if (not isinstance(size, (list, tuple)) or len(size) != 2 or _as_int(size[0]) is None
                or _as_int(size[1]) is None):
            raise InputError(f"{where}: RLE 'size' must be [height, width], got {size!r}")
        if [int(size[0]), int(size[1])] != [h, w]:
            raise InputError(f"{where}: mask size {int(size[0])}x{int(size[1])} (HxW) does not match "
                             f"the image's {h}x{w}")
        counts = seg["counts"]
        if isinstance(counts, bytes):
            try:
                seg["counts"] = counts = counts.decode("ascii")
            except UnicodeDecodeError:
                raise InputError(f"{where}: malformed RLE counts (not ASCII)") from None
        if isinstance(counts, str):
            str_idx.append(i)
        elif isinstance(counts, list):
            runs = [_as_int(v) for v in counts]
            if any(v is None or v < 0 for v in runs) or sum(runs) != h * w:  # type: ignore[arg-type]
                raise InputError(f"{where}: malformed uncompressed RLE (runs must be >= 0 and add up to {h * w})")
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)
            rle["counts"] = rle["counts"].decode("ascii")
            item["segmentation"] = rle
        else:
            raise InputError(f"{where}: RLE 'counts' must be a string or a list of run lengths")
    if str_idx:
        counts_list = [items[i]["segmentation"]["counts"] for i in str_idx]
        n_pix = [int(items[i]["segmentation"]["size"][0]) * int(items[i]["segmentation"]["size"][1])
                 for i in str_idx]
        bad = np.flatnonzero(check_rle_counts(counts_list, n_pix))
        if bad.size:
            i = str_idx[int(bad[0])]
            raise InputError(f"{what} {i} (image_id {items[i]['image_id']}): malformed RLE counts "
                             f"({bad.size} bad in total)")


def load_ground_truth(source: str | Path | dict) -> tuple[COCO, Path | None]:
    """Load and check a COCO ground-truth file (or dict); return it and the folder images are relative to.

    A dict is deep-copied (pycocotools writes into annotations). Missing ``iscrowd`` is taken as 0
    and missing ``area`` as the mask's pixel count, so externally made files work too.
    """
    root: Path | None = None
    if isinstance(source, dict):
        data = {**source, **{k: _copy_items(source[k]) for k in ("images", "annotations", "categories")
                             if isinstance(source.get(k), list)}}
    else:
        path = Path(source)
        data = read_json(path, "ground truth")
        root = path.resolve().parent
    if not isinstance(data, dict):
        raise InputError("ground truth must be a COCO object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"ground truth has no '{key}' list: not a COCO instances file")
    images: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or _as_int(img.get("id")) is None or \
                _as_int(img.get("width")) is None or _as_int(img.get("height")) is None:
            raise InputError(f"ground truth image {i}: needs integer id, width and height")
        images[int(img["id"])] = img
    cat_ids = set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or _as_int(cat.get("id")) is None:
            raise InputError(f"ground truth category {i}: needs an integer id")
        cat.setdefault("name", str(cat["id"]))
        cat_ids.add(int(cat["id"]))
    anns = data["annotations"]
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or _as_int(ann.get("id")) is None:
            raise InputError(f"ground truth annotation {i}: needs an integer id")
        if _as_int(ann.get("image_id")) not in images:
            raise InputError(f"ground truth annotation {i}: unknown image_id {ann.get('image_id')!r}")
        if _as_int(ann.get("category_id")) not in cat_ids:
            raise InputError(f"ground truth annotation {i}: unknown category_id {ann.get('category_id')!r}")
        ann["image_id"] = int(ann["image_id"])
        ann["category_id"] = int(ann["category_id"])
        ann["iscrowd"] = int(bool(ann.get("iscrowd", 0)))
    _normalise_segmentations(anns, images, "ground truth annotation")
    for ann in anns:
        if not isinstance(ann.get("area"), (int, float)):
            ann["area"] = float(mask_utils.area(ann["segmentation"]))
    coco = COCO()
    coco.dataset = data
    with quiet():
        coco.createIndex()
    return coco, root


def load_predictions(source: str | Path | list, gt: COCO) -> COCO:
    """Load and check a COCO results list against ``gt``; return it as a COCO object.

    Same as ``gt.loadRes`` for segmentation results, with two differences: an empty list is
    allowed (every AP is then 0, or -1 where there is no ground truth), and a ``bbox`` given in
    the results is dropped, so the area used for small/medium/large is the mask's (loadRes would
    use the box's; detectron2 drops it for the same reason).
    """
    if isinstance(source, list):
        preds = _copy_items(source)
    else:
        preds = read_json(Path(source), "predictions")
        if isinstance(preds, dict) and isinstance(preds.get("annotations"), list):
            preds = preds["annotations"]  # tolerate a COCO-style wrapper
    if not isinstance(preds, list):
        raise InputError("predictions must be a JSON list of {image_id, category_id, score, segmentation}")
    images = gt.imgs
    cat_ids = set(gt.getCatIds())
    unknown_img: set[Any] = set()
    unknown_cat: set[Any] = set()
    for i, p in enumerate(preds):
        if not isinstance(p, dict):
            raise InputError(f"prediction {i} is not an object")
        for key in ("image_id", "category_id", "score", "segmentation"):
            if key not in p:
                raise InputError(f"prediction {i} has no '{key}'")
        img_id, cat_id = _as_int(p["image_id"]), _as_int(p["category_id"])
        if img_id not in images:
            unknown_img.add(p["image_id"])
        if cat_id not in cat_ids:
            unknown_cat.add(p["category_id"])
        score = p["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise InputError(f"prediction {i}: score must be a finite number, got {score!r}")
        p["image_id"], p["category_id"], p["score"] = img_id, cat_id, float(score)
    if unknown_img:
        shown = ", ".join(map(repr, sorted(unknown_img, key=str)[:5]))
        raise InputError(f"{len(unknown_img)} prediction image id(s) not in the ground truth (e.g. {shown}): "
                         "predictions and ground truth are from different datasets?")
    if unknown_cat:
        shown = ", ".join(map(repr, sorted(unknown_cat, key=str)[:5]))
        raise InputError(f"prediction category id(s) not in the ground truth: {shown}")
    _normalise_segmentations(preds, images, "prediction")
    for i, p in enumerate(preds):
        p.pop("bbox", None)
        p["area"] = float(mask_utils.area(p["segmentation"]))
        p["bbox"] = [float(v) for v in mask_utils.toBbox(p["segmentation"])]
        p["id"] = i + 1
        p["iscrowd"] = 0
    res = COCO()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                   "annotations": preds}
    with quiet():
        res.createIndex()
    return res
