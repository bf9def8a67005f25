"""``validate`` command: check a dataset the way a strict consumer (pycocotools, detectron2, mmdet) would.

Every ``annotations*.json`` of the dataset is loaded with pycocotools, every mask is decoded, and
what the file claims (area, bbox, ids, categories, image sizes, the instance-id maps and the amodal
extras) is compared with what is actually there. Where the dataset has semantic or panoptic outputs
(``core.panoptic``), they are checked against the instance annotations of the same image.
Problems are collected, not raised, so one run lists all of them; the CLI prints one line per
problem and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import struct
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .coco import bbox_of_mask, decode_segmentation
from .dataset import ANNOTATIONS_FILE, RECORDS_DIR, load_coco
from .panoptic import (PANOPTIC_DIR, PANOPTIC_PREFIX, SEMANTIC_DIR, output_name, panoptic_file_for,
                       read_label_png, read_panoptic_png)

log = logging.getLogger(__name__)

#: stored error/warning messages per report; the rest are only counted
MAX_STORED = 1000
#: tolerance between a stored visible_fraction and visible area / amodal area
VISIBLE_FRACTION_TOL = 0.01


@dataclass
class ValidationReport:
    """Outcome of ``validate_dataset``: ``ok`` when there are no errors."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error_count: int = 0
    warning_count: int = 0

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED:
            self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_STORED:
            self.warnings.append(message)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _positive_int(v: Any) -> int | None:
    return int(v) if _is_int(v) and v > 0 else None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG header without decoding the image; None if not a PNG."""
    with path.open("rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def _image_size(path: Path) -> tuple[int, int] | None:
    size = _png_size(path)
    if size is not None:
        return size
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    return int(img.shape[1]), int(img.shape[0])


@dataclass
class _Panoptic:
    """The panoptic JSON that mirrors one COCO file, indexed for the per-image checks."""

    label: str
    data: dict
    by_image: dict[Any, dict] = field(default_factory=dict)
    isthing: dict[Any, int] = field(default_factory=dict)  # category id -> isthing


class _FileChecker:
    """Checks one COCO file (and the panoptic file / semantic maps that go with it); shares the
    file-size cache and the set of semantic maps already checked across the dataset's files."""

    def __init__(self, report: ValidationReport, base: Path, label: str, size_cache: dict[Path, Any],
                 *, panoptic: _Panoptic | None = None, semantic_done: set[Path] | None = None) -> None:
        self.r = report
        self.base = base
        self.label = label
        self.sizes = size_cache
        self.pan = panoptic
        #: None: no semantic/ folder to check
        self.semantic_done = semantic_done

    def err(self, msg: str) -> None:
        self.r.error(f"{self.label}: {msg}")

    def warn(self, msg: str) -> None:
        self.r.warn(f"{self.label}: {msg}")

    # ---- top level -------------------------------------------------------------------------
    def check(self, data: dict) -> dict[str, Any]:
        cats = self.check_categories(data["categories"])
        images = self.check_images(data["images"])
        by_image = self.check_annotation_fields(data["annotations"], images, cats)
        self.check_pycocotools(data)
        if self.pan is not None:
            self.check_panoptic_file(images, cats)
        per_cat: Counter[str] = Counter()
        for image_id, image in images.items():
            anns = by_image.get(image_id, [])
            masks = self.check_image_masks(image, anns) if anns else {}
            self.check_label_outputs(image, anns, masks)
            for a in anns:
                if _is_int(a.get("category_id")) and a["category_id"] in cats:
                    per_cat[cats[a["category_id"]]] += 1
        empty = sum(1 for i in images if not by_image.get(i))
        checked = ([self.pan.label] if self.pan is not None else []) + \
            ([f"{SEMANTIC_DIR}/"] if self.semantic_done is not None else [])
        return {"images": len(data["images"]), "annotations": len(data["annotations"]),
                "empty_images": empty, "per_category": dict(sorted(per_cat.items())), "outputs": checked}

    def check_categories(self, categories: list[dict]) -> dict[Any, str]:
        out: dict[Any, str] = {}
        names: Counter[str] = Counter()
        for c in categories:
            cid, name = c.get("id"), c.get("name")
            if not _is_int(cid):
                self.err(f"category id {cid!r} is not an integer")
                continue
            if cid in out:
                self.err(f"category id {cid} is used twice")
            if not isinstance(name, str) or not name.strip():
                self.err(f"category {cid} has no name")
                name = ""
            names[name] += 1
            out[cid] = name
        ids = sorted(out)
        if not ids:
            self.err("no categories")
        elif ids != list(range(1, len(ids) + 1)):
            self.err(f"category ids must be contiguous 1..{len(ids)}, got {ids}")
        for name, n in names.items():
            if name and n > 1:
                self.err(f"category name {name!r} is used by {n} categories")
        return out

    def check_images(self, images: list[dict]) -> dict[Any, dict]:
        out: dict[Any, dict] = {}
        for im in images:
            iid: Any = im.get("id")
            if not _is_int(iid) or iid <= 0:
                self.err(f"image id {iid!r} is not a positive integer")
                continue
            if iid in out:
                self.err(f"image id {iid} is used twice")
                continue
            w, h = _positive_int(im.get("width")), _positive_int(im.get("height"))
            if w is None or h is None:
                self.err(f"image {iid}: width/height must be positive integers, "
                         f"got {im.get('width')!r}x{im.get('height')!r}")
                continue
            out[iid] = im
            name = im.get("file_name")
            if not isinstance(name, str) or not name:
                self.err(f"image {iid}: no file_name")
            else:
                self.check_file(iid, "file_name", name, (w, h))
            for key in ("mask_file", "depth_file"):
                if isinstance(im.get(key), str) and im[key]:
                    self.check_file(iid, key, im[key], (w, h) if key == "mask_file" else None)
                elif im.get(key) is not None:
                    self.err(f"image {iid}: {key} {im[key]!r} is not a relative path")
        return out

    def check_file(self, image_id: Any, key: str, rel: str, size: tuple[int, int] | None) -> None:
        path = self.base / rel
        if not path.is_file():
            self.err(f"image {image_id}: {key} not found: {path}")
            return
        if size is None:
            return
        if path not in self.sizes:
            try:
                self.sizes[path] = _image_size(path)
            except OSError as exc:
                self.sizes[path] = exc
        got = self.sizes[path]
        if got is None or isinstance(got, OSError):
            self.err(f"image {image_id}: {key} cannot be read as an image: {path}")
        elif tuple(got) != tuple(size):
            self.err(f"image {image_id}: {key} is {got[0]}x{got[1]} but the record says {size[0]}x{size[1]}: {path}")

    def check_annotation_fields(self, annotations: list[dict], images: dict, cats: dict) -> dict[Any, list[dict]]:
        seen: set[Any] = set()
        by_image: dict[Any, list[dict]] = defaultdict(list)
        for a in annotations:
            aid: Any = a.get("id")
            if not _is_int(aid) or aid <= 0:
                self.err(f"annotation id {aid!r} is not a positive integer")
                continue
            if aid in seen:
                self.err(f"annotation id {aid} is used twice")
                continue
            seen.add(aid)
            image_id, cat_id, crowd = a.get("image_id"), a.get("category_id"), a.get("iscrowd")
            if not _is_int(image_id) or image_id not in images:
                self.err(f"annotation {aid}: image_id {image_id!r} does not exist")
                continue
            if not _is_int(cat_id) or cat_id not in cats:
                self.err(f"annotation {aid}: category_id {cat_id!r} does not exist")
            if not _is_int(crowd) or crowd not in (0, 1):
                self.err(f"annotation {aid}: iscrowd must be the integer 0 or 1, got {crowd!r}")
            iid = a.get("instance_id")
            if "instance_id" in a and not _is_int(iid):
                self.err(f"annotation {aid}: instance_id {iid!r} is not an integer")
            if "truncated" in a and not isinstance(a["truncated"], bool):
                self.err(f"annotation {aid}: truncated {a['truncated']!r} is not true/false")
            if "segmentation" not in a:
                self.err(f"annotation {aid}: no segmentation")
                continue
            by_image[a["image_id"]].append(a)
        return by_image

    def check_pycocotools(self, data: dict) -> None:
        from pycocotools.coco import COCO

        coco = COCO()
        coco.dataset = data
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                coco.createIndex()
        except Exception as exc:  # pycocotools raises KeyError/TypeError on malformed entries
            self.err(f"pycocotools cannot index the file: {type(exc).__name__}: {exc}")

    # ---- masks -----------------------------------------------------------------------------
    def decode(self, aid: Any, key: str, seg: Any, h: int, w: int) -> np.ndarray | None:
        try:
            return decode_segmentation(seg, h, w).astype(bool)
        except ValueError as exc:
            self.err(f"annotation {aid}: {key} cannot be decoded: {exc}")
            return None

    def check_geometry(self, aid: Any, what: str, mask: np.ndarray, area: Any, bbox: Any, exact: bool) -> None:
        pixels = int(mask.sum())
        if pixels == 0:
            self.err(f"annotation {aid}: {what} mask is empty")
            return
        area_tol = 0.5 if exact else max(1.0, 0.02 * pixels)
        if not _is_number(area):
            self.err(f"annotation {aid}: {what} area {area!r} is not a number")
        elif abs(float(area) - pixels) > area_tol:
            self.err(f"annotation {aid}: {what} area {area} but the mask has {pixels} pixels")
        tight = bbox_of_mask(mask)
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            self.err(f"annotation {aid}: {what} bbox {bbox!r} is not [x, y, w, h]")
        elif max(abs(float(b) - t) for b, t in zip(bbox, tight)) > (1e-3 if exact else 1.0):
            self.err(f"annotation {aid}: {what} bbox {bbox} but the mask's tight bbox is {tight}")

    def check_image_masks(self, image: dict, anns: list[dict]) -> dict[Any, np.ndarray]:
        """Check each annotation's masks and geometry; returns the decoded visible masks by annotation id."""
        h, w = int(image["height"]), int(image["width"])
        owner = np.zeros((h, w), np.int64)
        masks: dict[Any, np.ndarray] = {}
        for a in anns:
            aid = a["id"]
            mask = self.decode(aid, "segmentation", a["segmentation"], h, w)
            if mask is None:
                continue
            exact = isinstance(a["segmentation"], dict)
            self.check_geometry(aid, "visible", mask, a.get("area"), a.get("bbox"), exact)
            b = a.get("bbox")
            if isinstance(b, list) and len(b) == 4 and all(_is_number(v) for v in b):
                if b[0] < 0 or b[1] < 0 or b[0] + b[2] > w + 1e-6 or b[1] + b[3] > h + 1e-6:
                    self.err(f"annotation {aid}: bbox {b} leaves the {w}x{h} image")
            if a.get("iscrowd") == 0:
                clash = owner[mask]
                clash = clash[clash != 0]
                if clash.size:
                    other = int(np.bincount(clash).argmax())
                    self.err(f"image {image['id']}: visible masks of annotations {other} and {aid} overlap "
                             f"({clash.size} pixels)")
                owner[mask] = aid
            masks[aid] = mask
            self.check_extras(a, mask, h, w)
        if isinstance(image.get("mask_file"), str):
            self.check_id_map(image, anns, masks)
        return masks

    def check_extras(self, a: dict, mask: np.ndarray, h: int, w: int) -> None:
        aid = a["id"]
        amodal = None
        if "amodal_segmentation" in a and a["amodal_segmentation"] is not None:
            amodal = self.decode(aid, "amodal_segmentation", a["amodal_segmentation"], h, w)
            if amodal is not None:
                exact = isinstance(a["amodal_segmentation"], dict)
                self.check_geometry(aid, "amodal", amodal, a.get("amodal_area"), a.get("amodal_bbox"), exact)
                outside = int(np.count_nonzero(mask & ~amodal))
                if outside and (exact or outside > max(1, 0.02 * mask.sum())):
                    self.err(f"annotation {aid}: {outside} visible pixels lie outside the amodal mask")
        if "visible_fraction" in a:
            vf = a["visible_fraction"]
            if not _is_number(vf) or not 0.0 < float(vf) <= 1.0:
                self.err(f"annotation {aid}: visible_fraction {vf!r} is not in (0, 1]")
            elif amodal is not None and amodal.any():
                expected = float(mask.sum()) / float(amodal.sum())
                if abs(float(vf) - expected) > VISIBLE_FRACTION_TOL:
                    self.err(f"annotation {aid}: visible_fraction {vf} but visible/amodal area is {expected:.4f}")

    def check_id_map(self, image: dict, anns: list[dict], masks: dict[Any, np.ndarray]) -> None:
        path = self.base / image["mask_file"]
        if not path.is_file():
            return  # already reported by check_file
        id_map = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if id_map is None or id_map.ndim != 2:
            self.err(f"image {image['id']}: mask_file is not a single-channel id map: {path}")
            return
        if id_map.shape != (int(image["height"]), int(image["width"])):
            return  # size mismatch already reported
        known: set[int] = set()
        for a in anns:
            iid: Any = a.get("instance_id")
            if not _is_int(iid) or a["id"] not in masks:
                continue
            known.add(int(iid))
            diff = int(np.count_nonzero((id_map == iid) != masks[a["id"]]))
            if diff:
                self.err(f"annotation {a['id']}: mask differs from id {iid} in {image['mask_file']} by {diff} pixels")
        present = set(int(v) for v in np.unique(id_map)) - {0}
        extra = sorted(present - known)
        if extra:
            self.warn(f"image {image['id']}: ids {extra[:10]} in {image['mask_file']} have no annotation")

    # ---- semantic and panoptic outputs -----------------------------------------------------
    def pan_err(self, msg: str) -> None:
        assert self.pan is not None
        self.r.error(f"{self.pan.label}: {msg}")

    def check_panoptic_file(self, images: dict[Any, dict], cats: dict[Any, str]) -> None:
        """Categories (the COCO ones as things + stuff) and one entry per image of the COCO file."""
        assert self.pan is not None
        pan = self.pan
        for c in pan.data["categories"]:
            cid, isthing = c.get("id"), c.get("isthing")
            if not _is_int(cid) or cid in pan.isthing:
                self.pan_err(f"category id {cid!r} is not an integer or is used twice")
            elif not _is_int(isthing) or isthing not in (0, 1):
                self.pan_err(f"category {cid}: isthing must be 0 or 1, got {isthing!r}")
            else:
                pan.isthing[cid] = int(isthing)
                if cid in cats and (c.get("name") != cats[cid] or not isthing):
                    self.pan_err(f"category {cid} is {c.get('name')!r} (isthing {isthing}) but "
                                 f"{self.label} has the thing category {cats[cid]!r}")
                elif cid not in cats and isthing:
                    self.pan_err(f"category {cid} ({c.get('name')!r}) is a thing category missing from {self.label}")
        for cid in sorted(set(cats) - set(pan.isthing)):
            self.pan_err(f"category {cid} ({cats[cid]!r}) of {self.label} is missing")
        pan_images = {im.get("id") for im in pan.data["images"]}
        missing = sorted(set(images) - pan_images)
        if missing:
            self.pan_err(f"images {missing[:10]} of {self.label} are not in images[]")
        for a in pan.data["annotations"]:
            iid = a.get("image_id")
            if iid in pan.by_image:
                self.pan_err(f"image {iid!r} has two annotations")
            elif iid not in images:
                self.pan_err(f"annotation for image {iid!r}, which {self.label} does not have")
            else:
                pan.by_image[iid] = a

    def check_label_outputs(self, image: dict, anns: list[dict], masks: dict[Any, np.ndarray]) -> None:
        if self.semantic_done is not None:
            self.check_semantic(image, anns, masks)
        if self.pan is not None:
            self.check_panoptic_image(image, anns, masks)

    def check_semantic(self, image: dict, anns: list[dict], masks: dict[Any, np.ndarray]) -> None:
        """semantic/<stem>.png == the union of the image's instance masks by category, 0 elsewhere."""
        assert self.semantic_done is not None
        iid, h, w = image["id"], int(image["height"]), int(image["width"])
        try:
            rel = f"{SEMANTIC_DIR}/{output_name(image)}"
        except ValueError:
            return  # no file_name: already reported
        path = self.base / rel
        if path in self.semantic_done:
            return  # the same image in another annotations file
        self.semantic_done.add(path)
        if not path.is_file():
            self.err(f"image {iid}: semantic map not found: {path}")
            return
        try:
            sem = read_label_png(path, "semantic map")
        except ValueError as exc:
            self.err(f"image {iid}: {exc}")
            return
        if sem.shape != (h, w):
            self.err(f"image {iid}: {rel} is {sem.shape[1]}x{sem.shape[0]} but the image is {w}x{h}")
            return
        expected = np.zeros((h, w), np.int64)
        for a in anns:
            if a["id"] in masks and _is_int(a.get("category_id")):
                expected[masks[a["id"]]] = a["category_id"]
        wrong = np.flatnonzero(sem.ravel() != expected.ravel())
        if wrong.size:
            y, x = divmod(int(wrong[0]), w)
            self.err(f"image {iid}: {rel} differs from the instance masks by category in {wrong.size} pixels "
                     f"(first at x={x}, y={y}: {int(sem[y, x])}, expected {int(expected[y, x])})")

    def check_panoptic_image(self, image: dict, anns: list[dict], masks: dict[Any, np.ndarray]) -> None:
        """The PNG decodes; its segments are the instance ids (+ stuff); segments_info and the
        thing masks agree with the PNG and with the instance annotations exactly."""
        assert self.pan is not None
        iid, h, w = image["id"], int(image["height"]), int(image["width"])
        entry = self.pan.by_image.get(iid)
        if entry is None:
            self.pan_err(f"image {iid}: no annotation (segments_info) for it")
            return
        name, infos = entry.get("file_name"), entry.get("segments_info")
        if not isinstance(name, str) or not name:
            self.pan_err(f"image {iid}: no file_name")
            return
        rel = f"{PANOPTIC_DIR}/{name}"
        path = self.base / rel
        if not path.is_file():
            self.pan_err(f"image {iid}: panoptic PNG not found: {path}")
            return
        try:
            seg = read_panoptic_png(path)
        except ValueError as exc:
            self.pan_err(f"image {iid}: panoptic PNG does not decode: {exc}")
            return
        if seg.shape != (h, w):
            self.pan_err(f"image {iid}: {rel} is {seg.shape[1]}x{seg.shape[0]} but the image is {w}x{h}")
            return
        if not isinstance(infos, list) or not all(isinstance(s, dict) for s in infos):
            self.pan_err(f"image {iid}: segments_info must be a list of objects")
            return
        by_id: dict[int, dict] = {}
        for s in infos:
            sid = s.get("id")
            if not _is_int(sid) or sid <= 0:
                self.pan_err(f"image {iid}: segment id {sid!r} is not a positive integer")
            elif sid in by_id:
                self.pan_err(f"image {iid}: segment id {sid} is listed twice")
            else:
                by_id[int(sid)] = s
        ids, counts = np.unique(seg, return_counts=True)
        in_png = {int(i): int(n) for i, n in zip(ids, counts) if i != 0}
        only_png, only_info = sorted(set(in_png) - set(by_id)), sorted(set(by_id) - set(in_png))
        if only_png:
            self.pan_err(f"image {iid}: segment ids {only_png[:10]} are in {rel} but not in segments_info")
        if only_info:
            self.pan_err(f"image {iid}: segments_info ids {only_info[:10]} are not in {rel}")
        instances = {int(a["instance_id"]): a for a in anns if _is_int(a.get("instance_id"))}
        things = {sid for sid, s in by_id.items() if self.pan.isthing.get(s.get("category_id")) != 0}
        if things != set(instances):
            self.pan_err(f"image {iid}: panoptic segment ids {sorted(things)[:10]} do not match the instance ids "
                         f"{sorted(instances)[:10]}")
        for sid, s in sorted(by_id.items()):
            cat = s.get("category_id")
            if cat not in self.pan.isthing:
                self.pan_err(f"image {iid}: segment {sid}: category_id {cat!r} does not exist")
            ann = instances.get(sid)
            if ann is not None:
                if cat != ann.get("category_id"):
                    self.pan_err(f"image {iid}: segment {sid} has category {cat!r} but annotation {ann['id']} "
                                 f"has {ann.get('category_id')!r}")
                if s.get("iscrowd") != ann.get("iscrowd"):
                    self.pan_err(f"image {iid}: segment {sid} has iscrowd {s.get('iscrowd')!r} but annotation "
                                 f"{ann['id']} has {ann.get('iscrowd')!r}")
            elif s.get("iscrowd") not in (0, 1) or isinstance(s.get("iscrowd"), bool):
                self.pan_err(f"image {iid}: segment {sid}: iscrowd must be 0 or 1, got {s.get('iscrowd')!r}")
            if sid not in in_png:
                continue
            mask = seg == sid
            area, bbox = s.get("area"), s.get("bbox")
            if not isinstance(area, (int, float)) or not _is_number(area) or abs(float(area) - in_png[sid]) > 0.5:
                self.pan_err(f"image {iid}: segment {sid} area {area!r} but {rel} has {in_png[sid]} pixels")
            tight = bbox_of_mask(mask)
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                self.pan_err(f"image {iid}: segment {sid} bbox {bbox!r} is not [x, y, w, h]")
            elif max(abs(float(b) - t) for b, t in zip(bbox, tight)) > 1e-3:
                self.pan_err(f"image {iid}: segment {sid} bbox {bbox} but its tight bbox in {rel} is {tight}")
            if ann is not None and ann["id"] in masks:
                diff = int(np.count_nonzero(mask != masks[ann["id"]]))
                if diff:
                    self.pan_err(f"image {iid}: segment {sid} in {rel} differs from the mask of annotation "
                                 f"{ann['id']} by {diff} pixels")


def _load_panoptic(report: ValidationReport, coco_file: Path) -> _Panoptic | None:
    """The panoptic file mirroring ``coco_file``; a missing or unreadable one is reported."""
    try:
        path = panoptic_file_for(coco_file)
    except ValueError:
        return None  # a COCO file with another name has no panoptic mirror
    if not path.is_file():
        report.error(f"{path.name} not found: the dataset has panoptic outputs, so {coco_file.name} needs it")
        return None
    try:
        return _Panoptic(path.name, load_coco(path))
    except (ValueError, FileNotFoundError, OSError) as exc:
        report.error(str(exc))
        return None


def _annotation_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("annotations*.json") if p.is_file())


def validate_dataset(root: str | Path) -> ValidationReport:
    """Check every ``annotations*.json`` of a dataset folder (or one COCO file and its folder)."""
    report = ValidationReport()
    path = Path(root)
    if not path.exists():
        report.error(f"dataset not found: {path}")
        return report
    if path.is_file():
        files, base = [path], path.parent
    else:
        files, base = _annotation_files(path), path
        if not files:
            hint = " (records/ exists: run merge first)" if (path / RECORDS_DIR).is_dir() else ""
            report.error(f"no {ANNOTATIONS_FILE} (or annotations_<split>.json) in {path}{hint}")
            return report
    sizes: dict[Path, Any] = {}
    per_file: dict[str, Any] = {}
    has_panoptic = (base / PANOPTIC_DIR).is_dir() or any(base.glob(f"{PANOPTIC_PREFIX}*.json"))
    semantic_done: set[Path] | None = set() if (base / SEMANTIC_DIR).is_dir() else None
    for f in files:
        try:
            data = load_coco(f)
        except (ValueError, FileNotFoundError, OSError) as exc:
            report.error(str(exc))
            continue
        pan = _load_panoptic(report, f) if has_panoptic else None
        checker = _FileChecker(report, base, f.name, sizes, panoptic=pan, semantic_done=semantic_done)
        per_file[f.name] = checker.check(data)
    report.summary = {"files": per_file}
    return report


# --------------------------------------------------------------------------------------------
# CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, metavar="DATASET",
                        help="dataset folder holding annotations*.json (or one COCO file)")
    parser.add_argument("--max-errors", type=int, default=50, metavar="N",
                        help="print at most N problems (default 50); the rest are counted")


def _print_summary(report: ValidationReport) -> None:
    for name, s in report.summary.get("files", {}).items():
        cats = ", ".join(f"{k}: {v}" for k, v in s["per_category"].items()) or "none"
        outputs = f"; checked {', '.join(s['outputs'])}" if s.get("outputs") else ""
        print(f"{name}: {s['images']} images ({s['empty_images']} empty), {s['annotations']} annotations "
              f"[{cats}]{outputs}")


def run(args: argparse.Namespace) -> int:
    if args.max_errors < 1:
        raise ValueError("--max-errors must be at least 1")
    report = validate_dataset(args.dataset)
    if report.ok:
        _print_summary(report)
        for w in report.warnings[: args.max_errors]:
            print(f"warning: {w}")
        if report.warning_count > args.max_errors:
            print(f"warning: ... and {report.warning_count - args.max_errors} more warnings")
        print(f"OK: {args.dataset} is valid ({report.warning_count} warnings)")
        return 0
    for e in report.errors[: args.max_errors]:
        print(f"error: {e}", file=sys.stderr)
    if report.error_count > args.max_errors:
        print(f"error: ... and {report.error_count - args.max_errors} more problems", file=sys.stderr)
    print(f"INVALID: {args.dataset}: {report.error_count} problems", file=sys.stderr)
    return 1
