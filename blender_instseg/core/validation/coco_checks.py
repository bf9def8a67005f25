"""``validate``'s check of one COCO instances file: ids, categories, image files and sizes, every
mask decoded and compared with its area, bbox, amodal extras and the instance-id map.

The per-image mask check returns the decoded visible masks, which the output checkers
(``semantic_checks``, ``panoptic_checks``) compare their files with.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..formats.coco import bbox_of_mask, decode_segmentation
from .report import ValidationReport, is_int, is_number, positive_int

#: tolerance between a stored visible_fraction and visible area / amodal area
VISIBLE_FRACTION_TOL = 0.01


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
class CocoIndex:
    """What the file-level checks accepted: categories by id, images by id, annotations by image id."""

    categories: dict[Any, str]
    images: dict[Any, dict]
    by_image: dict[Any, list[dict]]


class CocoChecker:
    """Checks one COCO file; the file-size cache is shared across the dataset's files."""

    def __init__(self, report: ValidationReport, base: Path, label: str, size_cache: dict[Path, Any]) -> None:
        self.r = report
        self.base = base
        self.label = label
        self.sizes = size_cache

    def err(self, msg: str) -> None:
        self.r.error(f"{self.label}: {msg}")

    def warn(self, msg: str) -> None:
        self.r.warn(f"{self.label}: {msg}")

    # ---- the file ----------------------------------------------------------------------------
    def check_file(self, data: dict) -> CocoIndex:
        """Categories, images (and their files), annotation fields, and pycocotools' own index."""
        cats = self.check_categories(data["categories"])
        images = self.check_images(data["images"])
        by_image = self.check_annotation_fields(data["annotations"], images, cats)
        self.check_pycocotools(data)
        return CocoIndex(cats, images, by_image)

    def check_categories(self, categories: list[dict]) -> dict[Any, str]:
        out: dict[Any, str] = {}
        names: Counter[str] = Counter()
        for c in categories:
            cid, name = c.get("id"), c.get("name")
            if not is_int(cid):
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
            if not is_int(iid) or iid <= 0:
                self.err(f"image id {iid!r} is not a positive integer")
                continue
            if iid in out:
                self.err(f"image id {iid} is used twice")
                continue
            w, h = positive_int(im.get("width")), positive_int(im.get("height"))
            if w is None or h is None:
                self.err(f"image {iid}: width/height must be positive integers, "
                         f"got {im.get('width')!r}x{im.get('height')!r}")
                continue
            out[iid] = im
            name = im.get("file_name")
            if not isinstance(name, str) or not name:
                self.err(f"image {iid}: no file_name")
            else:
                self.check_image_file(iid, "file_name", name, (w, h))
            for key in ("mask_file", "depth_file"):
                if isinstance(im.get(key), str) and im[key]:
                    self.check_image_file(iid, key, im[key], (w, h) if key == "mask_file" else None)
                elif im.get(key) is not None:
                    self.err(f"image {iid}: {key} {im[key]!r} is not a relative path")
        return out

    def check_image_file(self, image_id: Any, key: str, rel: str, size: tuple[int, int] | None) -> None:
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
            if not is_int(aid) or aid <= 0:
                self.err(f"annotation id {aid!r} is not a positive integer")
                continue
            if aid in seen:
                self.err(f"annotation id {aid} is used twice")
                continue
            seen.add(aid)
            image_id, cat_id, crowd = a.get("image_id"), a.get("category_id"), a.get("iscrowd")
            if not is_int(image_id) or image_id not in images:
                self.err(f"annotation {aid}: image_id {image_id!r} does not exist")
                continue
            if not is_int(cat_id) or cat_id not in cats:
                self.err(f"annotation {aid}: category_id {cat_id!r} does not exist")
            if not is_int(crowd) or crowd not in (0, 1):
                self.err(f"annotation {aid}: iscrowd must be the integer 0 or 1, got {crowd!r}")
            iid = a.get("instance_id")
            if "instance_id" in a and not is_int(iid):
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

    # ---- per image: masks -----------------------------------------------------------------------------
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
        if not is_number(area):
            self.err(f"annotation {aid}: {what} area {area!r} is not a number")
        elif abs(float(area) - pixels) > area_tol:
            self.err(f"annotation {aid}: {what} area {area} but the mask has {pixels} pixels")
        tight = bbox_of_mask(mask)
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
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
            if isinstance(b, list) and len(b) == 4 and all(is_number(v) for v in b):
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
            if not is_number(vf) or not 0.0 < float(vf) <= 1.0:
                self.err(f"annotation {aid}: visible_fraction {vf!r} is not in (0, 1]")
            elif amodal is not None and amodal.any():
                expected = float(mask.sum()) / float(amodal.sum())
                if abs(float(vf) - expected) > VISIBLE_FRACTION_TOL:
                    self.err(f"annotation {aid}: visible_fraction {vf} but visible/amodal area is {expected:.4f}")

    def check_id_map(self, image: dict, anns: list[dict], masks: dict[Any, np.ndarray]) -> None:
        path = self.base / image["mask_file"]
        if not path.is_file():
            return  # already reported by check_image_file
        id_map = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if id_map is None or id_map.ndim != 2:
            self.err(f"image {image['id']}: mask_file is not a single-channel id map: {path}")
            return
        if id_map.shape != (int(image["height"]), int(image["width"])):
            return  # size mismatch already reported
        known: set[int] = set()
        for a in anns:
            iid: Any = a.get("instance_id")
            if not is_int(iid) or a["id"] not in masks:
                continue
            known.add(int(iid))
            diff = int(np.count_nonzero((id_map == iid) != masks[a["id"]]))
            if diff:
                self.err(f"annotation {a['id']}: mask differs from id {iid} in {image['mask_file']} by {diff} pixels")
        present = set(int(v) for v in np.unique(id_map)) - {0}
        extra = sorted(present - known)
        if extra:
            self.warn(f"image {image['id']}: ids {extra[:10]} in {image['mask_file']} have no annotation")
