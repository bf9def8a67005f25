"""``validate``'s check of the ``semantic`` format: each image's ``semantic/<stem>.png``.

A semantic map must equal the union of the image's instance masks by category (the visible masks
the COCO checker decoded), 0 elsewhere, pixel for pixel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..formats.label_maps import output_name, read_label_png
from ..formats.semantic import SEMANTIC_DIR
from .coco_checks import CocoIndex
from .report import ValidationReport, is_int


class SemanticChecker:
    """semantic/<stem>.png of each image; the set of maps already checked is shared across the
    dataset's COCO files (an image in two split files is checked once)."""

    def __init__(self, report: ValidationReport, base: Path, coco_label: str, done: set[Path]) -> None:
        self.r = report
        self.base = base
        self.coco_label = coco_label
        self.done = done
        self.name = f"{SEMANTIC_DIR}/"

    def err(self, msg: str) -> None:
        self.r.error(f"{self.coco_label}: {msg}")

    def check_file(self, index: CocoIndex) -> None:
        """Nothing file-wide: the maps are per image."""

    def check_image(self, image: dict, anns: list[dict], masks: dict[Any, np.ndarray]) -> None:
        """semantic/<stem>.png == the union of the image's instance masks by category, 0 elsewhere."""
        iid, h, w = image["id"], int(image["height"]), int(image["width"])
        try:
            rel = f"{SEMANTIC_DIR}/{output_name(image)}"
        except ValueError:
            return  # no file_name: already reported
        path = self.base / rel
        if path in self.done:
            return  # the same image in another annotations file
        self.done.add(path)
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
            if a["id"] in masks and is_int(a.get("category_id")):
                expected[masks[a["id"]]] = a["category_id"]
        wrong = np.flatnonzero(sem.ravel() != expected.ravel())
        if wrong.size:
            y, x = divmod(int(wrong[0]), w)
            self.err(f"image {iid}: {rel} differs from the instance masks by category in {wrong.size} pixels "
                     f"(first at x={x}, y={y}: {int(sem[y, x])}, expected {int(expected[y, x])})")
