"""One image of a dataset folder with its labels, for looking at: the panel's dataset browser and
its Preview Labels read them here (no bpy; Blender only gets the drawn picture).

A folder is read from its per-image records (``records/``, the source of truth, present in every
generated dataset and annotated scene) or, without them, from its merged COCO files
(``annotations.json``, else ``annotations_<split>.json``). Opening a folder lists it without
reading every image's labels, so stepping through a large dataset stays quick; one image's labels
are read when it is shown.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import coco, dataset

#: COCO's "small" objects: area below 32 x 32 pixels
SMALL_AREA = 32 * 32
#: the reasons an object has no annotation (records' ``hidden[].reason``), in the panel's order
HIDDEN_REASONS = ("outside_frame", "occluded", "too_little_visible")


@dataclass(frozen=True)
class LabelCounts:
    """What one image's labels hold: annotated objects, small ones, hidden ones by reason, per category."""

    annotated: int
    small: int
    hidden: dict[str, int]
    by_category: dict[str, int]

    def categories_line(self, most: int = 6) -> str:
        """'3 cube, 2 sphere, ... and 2 more' (most frequent first), or 'none'."""
        items = sorted(self.by_category.items(), key=lambda kv: (-kv[1], kv[0]))
        text = ", ".join(f"{n} {name}" for name, n in items[:most])
        if len(items) > most:
            text += f" and {len(items) - most} more"
        return text or "none"


@dataclass
class ImageLabels:
    """One image of a dataset and its labels, as stored (records' or COCO's fields)."""

    folder: Path
    position: int  # 0-based place in the folder's order (by record index or image id)
    total: int
    index: int | None  # the record's index (COCO: image id - 1 when the images carry no index)
    file_name: str
    split: str
    width: int
    height: int
    annotations: list[dict[str, Any]]
    hidden: list[dict[str, Any]]
    categories: dict[int, str]
    seed: int | None = None

    def names(self) -> list[str]:
        """Each annotation's category name (``class <id>`` for an id the folder does not name)."""
        return [self.categories.get(int(a.get("category_id", 0)), f"class {a.get('category_id')}")
                for a in self.annotations]

    def masks(self) -> np.ndarray:
        """(N, H, W) bool: every annotation's visible mask (RLE or polygon), in annotation order."""
        out = np.zeros((len(self.annotations), self.height, self.width), bool)
        for k, ann in enumerate(self.annotations):
            try:
                out[k] = coco.decode_segmentation(ann["segmentation"], self.height, self.width) > 0
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{self.file_name}: annotation {k + 1} has no usable segmentation: {exc}") from None
        return out

    def counts(self, area_scale: float = 1.0) -> LabelCounts:
        """The label counts; ``area_scale`` converts areas to another resolution before the small-object
        test (the preview renders smaller than the dataset: its areas times (dataset / preview) pixels)."""
        names = self.names()
        small = sum(1 for a in self.annotations if float(a.get("area", 0)) * area_scale < SMALL_AREA)
        reasons = Counter(str(h.get("reason", "")) for h in self.hidden)
        hidden = {reason: reasons.get(reason, 0) for reason in HIDDEN_REASONS}
        hidden.update({r: n for r, n in reasons.items() if r not in HIDDEN_REASONS})
        return LabelCounts(annotated=len(self.annotations), small=small, hidden=hidden,
                           by_category=dict(Counter(names)))

    def rgb(self) -> np.ndarray:
        """The image's pixels (H, W, 3 uint8 RGB); mid grey when its file is missing or unreadable, so
        the labels still show (a masks-only dataset moved without its images)."""
        path = self.folder / self.file_name if self.file_name else None
        data = cv2.imread(str(path), cv2.IMREAD_COLOR) if path is not None and path.is_file() else None
        if data is None or data.shape[:2] != (self.height, self.width):
            return np.full((self.height, self.width, 3), 128, np.uint8)
        return np.ascontiguousarray(data[..., ::-1])


def _categories(folder: Path, fallback: list[dict[str, Any]] | None = None) -> dict[int, str]:
    """Category id -> name from config.json, else the COCO file's categories; {} without either."""
    try:
        cats = dataset.read_dataset_config(folder)["categories"]
    except (ValueError, OSError):
        cats = fallback or []
    out: dict[int, str] = {}
    for c in cats:
        if isinstance(c, dict) and isinstance(c.get("id"), int):
            out[int(c["id"])] = str(c.get("name", f"class {c['id']}"))
    return out


def _stamp(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


class DatasetFolder:
    """A folder's images in order; ``image(position)`` reads one image's labels."""

    def __init__(self, folder: Path, records: list[Path], coco_images: list[dict[str, Any]],
                 coco_annotations: dict[int, list[dict[str, Any]]], categories: dict[int, str], source: str) -> None:
        self.folder = folder
        self.source = source  # "records" or the COCO file name(s)
        self._records = records
        self._images = coco_images
        self._annotations = coco_annotations
        self.categories = categories

    def __len__(self) -> int:
        return len(self._records) if self._records else len(self._images)

    def image(self, position: int) -> ImageLabels:
        """Image ``position`` (0-based, clamped into the folder) with its labels."""
        total = len(self)
        position = max(0, min(int(position), total - 1))
        if self._records:
            record = dataset.read_record(self._records[position])
            return ImageLabels(folder=self.folder, position=position, total=total, index=record["index"],
                               file_name=str(record.get("file_name") or ""), split=str(record.get("split") or ""),
                               width=record["width"], height=record["height"], annotations=record["annotations"],
                               hidden=list(record.get("hidden") or []), categories=self.categories,
                               seed=record.get("seed"))
        img = self._images[position]
        image_id = int(img["id"])
        index = img.get("index", image_id - 1)
        return ImageLabels(folder=self.folder, position=position, total=total, index=index,
                           file_name=str(img.get("file_name") or ""), split=str(img.get("split") or ""),
                           width=int(img["width"]), height=int(img["height"]),
                           annotations=self._annotations.get(image_id, []), hidden=[],
                           categories=self.categories, seed=img.get("seed"))


def _record_files(folder: Path) -> list[Path]:
    """The record files by index (names only: nothing is read until an image is shown)."""
    records = folder / dataset.RECORDS_DIR
    if not records.is_dir():
        return []
    found = [p for p in records.glob("[0-9]*.json") if p.stem.isdigit() and p.is_file()]
    return sorted(found, key=lambda p: int(p.stem))


def _coco_files(folder: Path) -> list[tuple[Path, str]]:
    """(COCO file, its split) to read: annotations.json, else every annotations_<split>.json."""
    merged = folder / dataset.ANNOTATIONS_FILE
    if merged.is_file():
        return [(merged, "")]
    return [(p, p.stem[len("annotations_"):]) for p in sorted(folder.glob("annotations_*.json")) if p.is_file()]


def _read_coco(folder: Path, files: list[tuple[Path, str]]) -> DatasetFolder:
    images: dict[int, dict[str, Any]] = {}
    annotations: dict[int, list[dict[str, Any]]] = {}
    categories: list[dict[str, Any]] = []
    for path, split in files:
        data = dataset.load_coco(path)
        categories = categories or data["categories"]
        for img in data["images"]:
            if not isinstance(img.get("id"), int) or not isinstance(img.get("width"), int) \
                    or not isinstance(img.get("height"), int):
                raise ValueError(f"{path.name}: an image has no integer id, width or height")
            images.setdefault(img["id"], {"split": split, **img})
        for ann in data["annotations"]:
            annotations.setdefault(int(ann.get("image_id", -1)), []).append(ann)
    ordered = [images[k] for k in sorted(images)]
    source = ", ".join(p.name for p, _ in files)
    return DatasetFolder(folder, [], ordered, annotations, _categories(folder, categories), source)


_CACHE: dict[str, tuple[tuple[float, ...], DatasetFolder]] = {}


def open_folder(folder: str | Path) -> DatasetFolder:
    """The dataset in ``folder`` (records, else COCO files); ``ValueError`` in one line when there is
    none. Kept while the folder's records/ and COCO files keep their time stamps (a browser steps often)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"not a folder: {root}")
    coco_files = _coco_files(root)
    stamp = (_stamp(root / dataset.RECORDS_DIR), _stamp(root / dataset.CONFIG_FILE),
             *(_stamp(p) for p, _ in coco_files))
    cached = _CACHE.get(str(root))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    records = _record_files(root)
    if records:
        opened = DatasetFolder(root, records, [], {}, _categories(root), dataset.RECORDS_DIR)
    elif coco_files:
        opened = _read_coco(root, coco_files)
    else:
        raise ValueError(f"no dataset in {root}: it has no records/ and no annotations.json")
    if not len(opened):
        raise ValueError(f"no images in {root}")
    _CACHE[str(root)] = (stamp, opened)
    return opened

