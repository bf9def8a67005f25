"""``validate``'s checks of the ``panoptic`` format: ``panoptic*.json`` and the panoptic PNGs.

Each image's PNG is compared with the instance annotations of the same image (the visible masks
the COCO checker decoded), exactly: it holds the instance ids as segment ids (+ the background
stuff segment), and ``segments_info`` states their true area, bbox and category.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.coco import bbox_of_mask
from ..formats.dataset import load_coco
from ..formats.label_maps import output_name
from ..formats.panoptic import PANOPTIC_DIR, panoptic_file_for, read_panoptic_png
from .coco_checks import CocoIndex
from .report import ValidationReport, is_int, is_number


@dataclass
class PanopticFile:
    """The panoptic JSON that mirrors one COCO file, indexed for the per-image checks."""

    label: str
    data: dict
    by_image: dict[Any, dict] = field(default_factory=dict)
    isthing: dict[Any, int] = field(default_factory=dict)  # category id -> isthing


def load_panoptic(report: ValidationReport, coco_file: Path) -> PanopticFile | None:
    """The panoptic file mirroring ``coco_file``; a missing or unreadable one is reported."""
    try:
        path = panoptic_file_for(coco_file)
    except ValueError:
        return None  # a COCO file with another name has no panoptic mirror
    if not path.is_file():
        report.error(f"{path.name} not found: the dataset has panoptic outputs, so {coco_file.name} needs it")
        return None
    try:
        return PanopticFile(path.name, load_coco(path))
    except (ValueError, FileNotFoundError, OSError) as exc:
        report.error(str(exc))
        return None


class PanopticChecker:
    """The panoptic file mirroring one COCO file, and each image's panoptic PNG."""

    def __init__(self, report: ValidationReport, base: Path, coco_label: str, pan: PanopticFile) -> None:
        self.r = report
        self.base = base
        self.coco_label = coco_label
        self.pan = pan
        self.name = pan.label

    def err(self, msg: str) -> None:
        self.r.error(f"{self.pan.label}: {msg}")

    def check_file(self, index: CocoIndex) -> None:
        """Categories (the COCO ones as things + stuff) and one entry per image of the COCO file."""
        images, cats = index.images, index.categories
        pan = self.pan
        for c in pan.data["categories"]:
            cid, isthing = c.get("id"), c.get("isthing")
            if not is_int(cid) or cid in pan.isthing:
                self.err(f"category id {cid!r} is not an integer or is used twice")
            elif not is_int(isthing) or isthing not in (0, 1):
                self.err(f"category {cid}: isthing must be 0 or 1, got {isthing!r}")
            else:
                pan.isthing[cid] = int(isthing)
                if cid in cats and (c.get("name") != cats[cid] or not isthing):
                    self.err(f"category {cid} is {c.get('name')!r} (isthing {isthing}) but "
                             f"{self.coco_label} has the thing category {cats[cid]!r}")
                elif cid not in cats and isthing:
                    self.err(f"category {cid} ({c.get('name')!r}) is a thing category missing from {self.coco_label}")
        for cid in sorted(set(cats) - set(pan.isthing)):
            self.err(f"category {cid} ({cats[cid]!r}) of {self.coco_label} is missing")
        pan_images = {im.get("id") for im in pan.data["images"]}
        missing = sorted(set(images) - pan_images)
        if missing:
            self.err(f"images {missing[:10]} of {self.coco_label} are not in images[]")
        for a in pan.data["annotations"]:
            iid = a.get("image_id")
            if iid in pan.by_image:
                self.err(f"image {iid!r} has two annotations")
            elif iid not in images:
                self.err(f"annotation for image {iid!r}, which {self.coco_label} does not have")
            else:
                pan.by_image[iid] = a


    def check_image(self, image: dict, anns: list[dict], masks: dict[Any, np.ndarray]) -> None:
        """The PNG decodes; its segments are the instance ids (+ stuff); segments_info and the
        thing masks agree with the PNG and with the instance annotations exactly."""
        iid, h, w = image["id"], int(image["height"]), int(image["width"])
        entry = self.pan.by_image.get(iid)
        if entry is None:
            self.err(f"image {iid}: no annotation (segments_info) for it")
            return
        name, infos = entry.get("file_name"), entry.get("segments_info")
        if not isinstance(name, str) or not name:
            self.err(f"image {iid}: no file_name")
            return
        rel = f"{PANOPTIC_DIR}/{name}"
        path = self.base / rel
        if not path.is_file():
            self.err(f"image {iid}: panoptic PNG not found: {path}")
            return
        try:
            seg = read_panoptic_png(path)
        except ValueError as exc:
            self.err(f"image {iid}: panoptic PNG does not decode: {exc}")
            return
        if seg.shape != (h, w):
            self.err(f"image {iid}: {rel} is {seg.shape[1]}x{seg.shape[0]} but the image is {w}x{h}")
            return
        if not isinstance(infos, list) or not all(isinstance(s, dict) for s in infos):
            self.err(f"image {iid}: segments_info must be a list of objects")
            return
        by_id: dict[int, dict] = {}
        for s in infos:
            sid = s.get("id")
            if not is_int(sid) or sid <= 0:
                self.err(f"image {iid}: segment id {sid!r} is not a positive integer")
            elif sid in by_id:
                self.err(f"image {iid}: segment id {sid} is listed twice")
            else:
                by_id[int(sid)] = s
        ids, counts = np.unique(seg, return_counts=True)
        in_png = {int(i): int(n) for i, n in zip(ids, counts) if i != 0}
        only_png, only_info = sorted(set(in_png) - set(by_id)), sorted(set(by_id) - set(in_png))
        if only_png:
            self.err(f"image {iid}: segment ids {only_png[:10]} are in {rel} but not in segments_info")
        if only_info:
            self.err(f"image {iid}: segments_info ids {only_info[:10]} are not in {rel}")
        instances = {int(a["instance_id"]): a for a in anns if is_int(a.get("instance_id"))}
        things = {sid for sid, s in by_id.items() if self.pan.isthing.get(s.get("category_id")) != 0}
        if things != set(instances):
            self.err(f"image {iid}: panoptic segment ids {sorted(things)[:10]} do not match the instance ids "
                     f"{sorted(instances)[:10]}")
        for sid, s in sorted(by_id.items()):
            cat = s.get("category_id")
            if cat not in self.pan.isthing:
                self.err(f"image {iid}: segment {sid}: category_id {cat!r} does not exist")
            ann = instances.get(sid)
            if ann is not None:
                if cat != ann.get("category_id"):
                    self.err(f"image {iid}: segment {sid} has category {cat!r} but annotation {ann['id']} "
                             f"has {ann.get('category_id')!r}")
                if s.get("iscrowd") != ann.get("iscrowd"):
                    self.err(f"image {iid}: segment {sid} has iscrowd {s.get('iscrowd')!r} but annotation "
                             f"{ann['id']} has {ann.get('iscrowd')!r}")
            elif s.get("iscrowd") not in (0, 1) or isinstance(s.get("iscrowd"), bool):
                self.err(f"image {iid}: segment {sid}: iscrowd must be 0 or 1, got {s.get('iscrowd')!r}")
            if sid not in in_png:
                continue
            mask = seg == sid
            area, bbox = s.get("area"), s.get("bbox")
            if not isinstance(area, (int, float)) or not is_number(area) or abs(float(area) - in_png[sid]) > 0.5:
                self.err(f"image {iid}: segment {sid} area {area!r} but {rel} has {in_png[sid]} pixels")
            tight = bbox_of_mask(mask)
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
                self.err(f"image {iid}: segment {sid} bbox {bbox!r} is not [x, y, w, h]")
            elif max(abs(float(b) - t) for b, t in zip(bbox, tight)) > 1e-3:
                self.err(f"image {iid}: segment {sid} bbox {bbox} but its tight bbox in {rel} is {tight}")
            if ann is not None and ann["id"] in masks:
                diff = int(np.count_nonzero(mask != masks[ann["id"]]))
                if diff:
                    self.err(f"image {iid}: segment {sid} in {rel} differs from the mask of annotation "
                             f"{ann['id']} by {diff} pixels")
