"""COCO dataset -> tensors for training and inference (masks decoded with pycocotools).

Datasets are read the way the generator writes them (docs/architecture.md): a folder with
``annotations_train.json``/``annotations_val.json`` or ``annotations.json``, image paths relative to
the folder holding the JSON. Any plain COCO instances file works too.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..core.fileio import read_json
from .layers.object_crops import object_crops
from .targets import SoloTargets
from .train_config import AugmentConfig

log = logging.getLogger(__name__)

PAD_VALUE = 114
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".exr")


class DataError(ValueError):
    """Bad dataset or images; the message is one line meant for a person."""


@dataclass
class ImageRecord:
    image_id: int
    path: Path
    width: int
    height: int
    anns: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CocoSource:
    """One COCO file resolved against its image folder, restricted to some of its images."""

    path: Path
    categories: list[dict[str, Any]]
    records: list[ImageRecord]

    @property
    def category_ids(self) -> list[int]:
        return [int(c["id"]) for c in self.categories]


def load_coco_source(path: str | Path, image_ids: Sequence[int] | None = None, check_images: bool = True) -> CocoSource:
    """Read and check a COCO instances file, resolved against its image folder as a ``CocoSource``;
    every failure is a one-line ``DataError``. (``core.formats.dataset.load_coco`` reads the plain dict.)"""
    p = Path(path)
    try:
        coco = read_json(p, "annotations file")
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(str(exc)) from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or not isinstance(coco.get("categories"), list):
        raise DataError(f"not a COCO instances file (needs 'images' and 'categories' lists): {p}")
    cats = sorted(coco["categories"], key=lambda c: int(c["id"]))
    if not cats:
        raise DataError(f"dataset has no categories: {p}")
    cat_ids = {int(c["id"]) for c in cats}
    root = p.parent
    records: dict[int, ImageRecord] = {}
    for im in coco["images"]:
        try:
            rec = ImageRecord(int(im["id"]), root / str(im["file_name"]), int(im["width"]), int(im["height"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"image entry without id/file_name/width/height in {p}: {str(im)[:80]}") from None
        records[rec.image_id] = rec
    for ann in coco.get("annotations", []) or []:
        rec = records.get(int(ann.get("image_id", -1)))
        if rec is None:
            raise DataError(f"annotation {ann.get('id')} refers to unknown image_id {ann.get('image_id')} in {p}")
        if int(ann.get("category_id", -1)) not in cat_ids:
            raise DataError(f"annotation {ann.get('id')} has category_id {ann.get('category_id')} not in categories of {p}")
        rec.anns.append(ann)
    chosen = [records[i] for i in sorted(records)] if image_ids is None else [records[i] for i in image_ids]
    if not chosen:
        raise DataError(f"dataset has no images: {p}")
    if check_images:
        missing = [r.path for r in chosen if not r.path.is_file()]
        if missing:
            raise DataError(f"{len(missing)} image file(s) missing, e.g. {missing[0]}")
    return CocoSource(p, cats, chosen)


def resolve_dataset(data: str | Path, *, val_split: str | None = None, val_fraction: float = 0.0,
                    seed: int = 0) -> tuple[CocoSource, CocoSource | None]:
    """DATASET (folder or JSON) -> (train, val). Without a val file, ``val_fraction`` of images is held out."""
    p = Path(data)
    if not p.exists():
        raise DataError(f"dataset not found: {p}")
    val_path: Path | None = None
    if p.is_dir():
        if (p / "annotations_train.json").is_file():
            train_path = p / "annotations_train.json"
            name = val_split or "val"
            if (p / f"annotations_{name}.json").is_file():
                val_path = p / f"annotations_{name}.json"
            elif val_split:
                raise DataError(f"validation split not found: {p / f'annotations_{name}.json'}")
        elif (p / "annotations.json").is_file():
            train_path = p / "annotations.json"
            if val_split:
                if not (p / f"annotations_{val_split}.json").is_file():
                    raise DataError(f"validation split not found: {p / f'annotations_{val_split}.json'}")
                val_path = p / f"annotations_{val_split}.json"
        else:
            raise DataError(f"no annotations_train.json or annotations.json in {p}")
    else:
        train_path = p
    if val_path is not None:
        train = load_coco_source(train_path)
        val = load_coco_source(val_path)
        if val.category_ids != train.category_ids:
            raise DataError(f"categories of {val_path.name} differ from {train_path.name}")
        return train, val
    full = load_coco_source(train_path)
    if val_fraction <= 0 or len(full.records) < 2:
        return full, None
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(full.records))
    n_val = min(len(full.records) - 1, max(1, int(round(val_fraction * len(full.records)))))
    val_idx = set(order[:n_val].tolist())
    train_recs = [r for i, r in enumerate(full.records) if i not in val_idx]
    val_recs = [r for i, r in enumerate(full.records) if i in val_idx]
    return CocoSource(full.path, full.categories, train_recs), CocoSource(full.path, full.categories, val_recs)


#: the one category of a class-agnostic run (``train --class-agnostic``) and of the bundled weights
OBJECT_CATEGORY: dict[str, Any] = {"id": 1, "name": "object", "supercategory": "object"}


def class_agnostic(src: CocoSource, category: dict[str, Any] = OBJECT_CATEGORY) -> CocoSource:
    """``src`` with every category folded into ``category``: the model learns "an object", not which
    one, so its weights transfer to categories it never saw (the bundled weights)."""
    records = [ImageRecord(r.image_id, r.path, r.width, r.height,
                           [{**a, "category_id": int(category["id"])} for a in r.anns]) for r in src.records]
    return CocoSource(src.path, [dict(category)], records)


# OpenCV's own warnings ("imread_(...): can't open/read file") would be a second stderr line beside
# our one-line error; the model side is its own process, so its OpenCV logs errors only.
cv2.setLogLevel(2)  # LOG_LEVEL_ERROR


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block: libpng prints "libpng error: ..." straight
    from C on a corrupt PNG, which no Python setting stops. Only around single-threaded checks."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_images_readable(paths: Sequence[Path]) -> None:
    """Decode every image once, before a command writes anything: a truncated or corrupt file is a
    one-line DataError now rather than a crash at step 500 or after most of a prediction run."""
    with native_stderr_silenced():
        for path in paths:
            read_image(path)


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) from any OpenCV-readable file; 16-bit and float images are rescaled."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"cannot read image: {path}" + ("" if Path(path).is_file() else " (no such file)"))
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def decode_to_size(seg: Any, h: int, w: int) -> np.ndarray:
    """COCO polygon / RLE (compressed or not) -> (h, w) uint8, resized (nearest) when the RLE's own
    size differs. ``core.formats.coco.decode_segmentation`` (the validator's) refuses such a mask instead."""
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if seg else None
        if rle is None:
            return np.zeros((h, w), np.uint8)
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, h, w)
    elif isinstance(seg, dict):
        rle = dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise DataError(f"unsupported segmentation of type {type(seg).__name__}")
    m = mask_utils.decode(rle)
    return m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)


def letterbox(img: np.ndarray, size: int, multiple: int = 32) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize so the longer side is ``size``, pad bottom/right to a multiple of 32; returns (image, valid_hw)."""
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    ph, pw = math.ceil(nh / multiple) * multiple, math.ceil(nw / multiple) * multiple
    out = np.full((ph, pw, 3), PAD_VALUE, np.uint8)
    out[:nh, :nw] = resized
    return out, (nh, nw)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


BANK_MAX = 50_000  # objects the classifier crop bank draws from (~115 MB of 24 px crops when all are cut)


def mask_boxes_xyxy(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) masks -> (N, 4) float32 tight boxes x1 y1 x2 y2 on pixel edges (x2 = last column + 1).

    The convention of ``ml/layers/boxes.py``; an empty mask gets (0, 0, 0, 0).
    """
    n = len(masks)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    h, w = masks.shape[1:]
    y1, x1 = rows.argmax(1), cols.argmax(1)
    y2, x2 = h - rows[:, ::-1].argmax(1), w - cols[:, ::-1].argmax(1)
    boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
    boxes[~rows.any(1)] = 0
    return boxes


class InstanceDataset(torch.utils.data.Dataset):
    """Augmented training samples for any architecture of the zoo.

    Each item is (image (3, S, S) float, target) with the generic target ``labels`` (N,) class
    index, ``masks`` (N, S, S) uint8, ``boxes`` (N, 4) float32 (tight, x1 y1 x2 y2 pixel edges),
    ``amodal_masks`` (N, S, S) uint8 when ``amodal`` (an annotation without
    ``amodal_segmentation`` uses its visible mask), plus whatever ``make_targets`` (the model's
    ``InstanceSegModel.make_targets``) adds; it runs here so data-loader workers do the work.

    Keys are (record index, epoch): augmentation draws from a RNG seeded by (seed, epoch, index),
    so a resumed run sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, source: CocoSource, category_ids: list[int], image_size: int, seed: int,
                 augment: AugmentConfig | None = None, cache_images: bool = True,
                 make_targets: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
                 amodal: bool = False, crop_bank: tuple[int, int] = (0, 0)) -> None:
        if image_size % 32:
            raise DataError(f"--image-size must be a multiple of 32, got {image_size}")
        self.source = source
        self.label_of = {cid: i for i, cid in enumerate(category_ids)}
        self.size = image_size
        self.seed = seed
        self.aug = augment or AugmentConfig()
        self.cache: dict[int, np.ndarray] | None = {} if cache_images else None
        self.make_targets = make_targets
        self.amodal = amodal
        self.bank_count, self.bank_size = crop_bank
        # the (record, annotation) pairs the crop bank draws from (at most BANK_MAX, a fixed random
        # subset), and their crops once cut, as uint8 (2.3 kB each at 24 px)
        self.bank_index: list[tuple[int, int]] = []
        if self.bank_count:
            pairs = [(i, j) for i, r in enumerate(source.records) for j, a in enumerate(r.anns) if not a.get("iscrowd", 0)]
            if len(pairs) > BANK_MAX:
                keep = np.sort(np.random.default_rng(seed).choice(len(pairs), BANK_MAX, replace=False))
                pairs = [pairs[k] for k in keep]
            self.bank_index = pairs
        self.bank_cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.source.records)

    def _image(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img = read_image(self.source.records[i].path)
        if self.cache is not None:
            self.cache[i] = img
        return img

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        i, epoch = key
        rec = self.source.records[i]
        rng = np.random.default_rng([self.seed, epoch, i])
        img = self._image(i)
        h0, w0 = img.shape[:2]
        anns = [a for a in rec.anns if not a.get("iscrowd", 0)]
        masks = (np.stack([decode_to_size(a["segmentation"], h0, w0) for a in anns]) if anns
                 else np.zeros((0, h0, w0), np.uint8))
        labels = np.array([self.label_of[int(a["category_id"])] for a in anns], np.int64)
        n = len(masks)
        if self.amodal and n:  # augmented together with the visible masks (one stack, same crop and flip)
            amodal = np.stack([decode_to_size(a["amodal_segmentation"], h0, w0) if a.get("amodal_segmentation")
                               else masks[k] for k, a in enumerate(anns)])
            masks = np.concatenate([masks, amodal])
        img, masks = self._augment(img, masks, rng)
        masks, amodal = masks[:n], masks[n:]
        keep = masks.sum(axis=(1, 2), dtype=np.int64) >= self.aug.min_area  # (0, S, S) for a negative image
        masks, labels = masks[keep], labels[keep]
        sample = {"labels": labels, "masks": masks, "boxes": mask_boxes_xyxy(masks)}
        if self.amodal:
            sample["amodal_masks"] = np.ascontiguousarray(amodal[keep]) if n else np.zeros_like(masks)
        if self.make_targets is not None:
            sample.update(self.make_targets(sample))
        target = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sample.items()}
        if self.bank_count and self.bank_index:
            target["object_crops"], target["object_crop_labels"] = self._bank_crops(rng)
        return to_tensor(img), target

    def _bank_crops(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``bank_count`` random objects of the whole set as classifier crops (``layers.object_crops``),
        each flipped left-right with probability ``hflip``; drawn from the sample's RNG, so resumable."""
        picks = [int(p) for p in rng.integers(len(self.bank_index), size=self.bank_count)]
        todo = sorted({p for p in picks if p not in self.bank_cache})
        for i in sorted({self.bank_index[p][0] for p in todo}):  # cut the new ones, one image at a time
            mine = [p for p in todo if self.bank_index[p][0] == i]
            img = self._image(i)
            h, w = img.shape[:2]
            anns = self.source.records[i].anns
            masks = torch.from_numpy(np.stack([decode_to_size(anns[self.bank_index[p][1]]["segmentation"], h, w)
                                               for p in mine]))
            cut = object_crops(to_tensor(img), masks, self.bank_size).mul_(255).round_().to(torch.uint8)
            self.bank_cache.update(zip(mine, cut))
        out = torch.stack([self.bank_cache[p] for p in picks]).float().div_(255)
        flip = torch.from_numpy(rng.random(len(out)) < self.aug.hflip)
        out[flip] = out[flip].flip(-1)
        labels = [self.label_of[int(self.source.records[i].anns[j]["category_id"])]
                  for i, j in (self.bank_index[p] for p in picks)]
        return out, torch.tensor(labels, dtype=torch.int64)

    def _augment(self, img: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        a, size = self.aug, self.size
        h0, w0 = img.shape[:2]
        s = size / max(h0, w0) * rng.uniform(a.scale_min, a.scale_max)
        nh, nw = max(1, round(h0 * s)), max(1, round(w0 * s))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if len(masks):
            masks = np.stack([cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST) for m in masks])
        else:
            masks = np.zeros((0, nh, nw), np.uint8)
        canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
        mcanvas = np.zeros((len(masks), size, size), np.uint8)
        # crop offset in the resized image (if larger) and paste offset on the canvas (if smaller)
        sy = int(rng.integers(0, nh - size + 1)) if nh > size else 0
        sx = int(rng.integers(0, nw - size + 1)) if nw > size else 0
        dy = int(rng.integers(0, size - nh + 1)) if nh < size else 0
        dx = int(rng.integers(0, size - nw + 1)) if nw < size else 0
        ch, cw = min(size, nh), min(size, nw)
        canvas[dy:dy + ch, dx:dx + cw] = img[sy:sy + ch, sx:sx + cw]
        mcanvas[:, dy:dy + ch, dx:dx + cw] = masks[:, sy:sy + ch, sx:sx + cw]
        if rng.random() < a.hflip:
            canvas, mcanvas = canvas[:, ::-1], mcanvas[:, :, ::-1]
        if rng.random() < a.vflip:
            canvas, mcanvas = canvas[::-1], mcanvas[:, ::-1]
        f = canvas.astype(np.float32)
        f *= 1 + rng.uniform(-a.brightness, a.brightness)
        mean = f.mean()
        f = (f - mean) * (1 + rng.uniform(-a.contrast, a.contrast)) + mean
        grey = f.mean(axis=2, keepdims=True)
        f = (f - grey) * (1 + rng.uniform(-a.saturation, a.saturation)) + grey
        return np.clip(f, 0, 255).astype(np.uint8), np.ascontiguousarray(mcanvas)


class TrainDataset(InstanceDataset):
    """``InstanceDataset`` with SOLOv2's grid targets, their settings passed directly (as benchmarks and tests call it)."""

    def __init__(self, source: CocoSource, category_ids: list[int], image_size: int, grids: Sequence[int],
                 scale_ranges: Sequence[tuple[float, float]], sigma: float, seed: int,
                 augment: AugmentConfig | None = None, cache_images: bool = True) -> None:
        super().__init__(source, category_ids, image_size, seed, augment, cache_images,
                         make_targets=SoloTargets(tuple(grids), tuple(scale_ranges), sigma))


class EpochBatches(torch.utils.data.Sampler):
    """Batches of (index, epoch) keys from ``start_step`` on, each epoch a fresh seeded permutation.

    Each rank takes its own slice of every global batch (what DistributedSampler does), and the
    sequence depends only on (seed, step), which is what makes ``--resume`` exact.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int = 0, total_steps: int | None = None,
                 rank: int = 0, world: int = 1) -> None:
        self.n, self.batch, self.seed = n, batch_size, seed
        self.start, self.total, self.rank, self.world = start_step, total_steps, rank, world
        self.steps_per_epoch = max(1, n // (batch_size * world))

    def __len__(self) -> int:
        return max(0, (self.total or 0) - self.start)

    def _perm(self, epoch: int) -> np.ndarray:
        need = self.steps_per_epoch * self.batch * self.world
        perm = np.random.default_rng([self.seed, 7919, epoch]).permutation(self.n)
        return np.resize(perm, need) if len(perm) < need else perm

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        cache: tuple[int, np.ndarray] | None = None
        while self.total is None or step < self.total:
            epoch, j = divmod(step, self.steps_per_epoch)
            if cache is None or cache[0] != epoch:
                cache = (epoch, self._perm(epoch))
            g = self.batch * self.world
            chunk = cache[1][j * g + self.rank * self.batch: j * g + (self.rank + 1) * self.batch]
            yield [(int(i), epoch) for i in chunk]
            step += 1


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files and folders (non-recursive) -> sorted, de-duplicated image paths."""
    out: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.update(q.resolve() for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS and q.is_file())
        elif p.is_file():
            out.add(p.resolve())
        else:
            raise DataError(f"image not found: {p}")
    if not out:
        raise DataError("no images found in " + ", ".join(str(p) for p in paths))
    return sorted(out)
