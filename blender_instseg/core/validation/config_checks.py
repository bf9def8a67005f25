"""Every image of a generated dataset against the folder's config.json: one seed, one set of settings.

Two generators started on one folder with different seeds used to leave a mixed dataset whose COCO
files were each valid. An image's seed is a pure function of the config's seed and the image's
index (``plan.image_seed``, or ``plan.variant_seed`` for a variant plan), and its size is the
config's resolution, so an image from another run shows up here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import plan
from ..fileio import read_json
from ..formats.dataset import CONFIG_FILE
from .report import ValidationReport, is_int


class ConfigChecker:
    """Checks COCO image entries against ``config.json`` in ``base``; a no-op for folders without one
    (a COCO file from elsewhere) or whose config holds no generator seed."""

    def __init__(self, report: ValidationReport, base: Path) -> None:
        self.report = report
        self.seed: int | None = None
        self.resolution: list[int] | None = None
        self.pairs: list[tuple[int, int]] | None = None
        path = base / CONFIG_FILE
        if not path.is_file():
            return
        try:
            conf = read_json(path, "dataset config")
        except (ValueError, FileNotFoundError, OSError) as exc:
            report.error(str(exc))
            return
        if not isinstance(conf, dict) or not is_int(conf.get("seed")):
            return
        self.seed = int(conf["seed"])
        render = (conf.get("generator") or {}).get("render") or {}
        if isinstance(render.get("resolution"), list):
            self.resolution = render["resolution"]
        if conf.get("variants_of") is not None:
            try:
                self.pairs = plan.expand_plan(plan.parse_plan(conf["variants_of"], f"{path} variants_of"))
            except ValueError as exc:
                report.error(str(exc))
                self.seed = None

    def check_images(self, coco_name: str, images: list[Any]) -> None:
        if self.seed is None:
            return
        for image in images:
            if not isinstance(image, dict) or not is_int(image.get("index")) or not is_int(image.get("seed")):
                continue
            index = int(image["index"])
            expected = self._expected_seed(index)
            where = f"{coco_name}: image {image.get('id')} (index {index})"
            if expected is None:
                self.report.error(f"{where} is outside the variant plan of {CONFIG_FILE}")
            elif image["seed"] != expected:
                self.report.error(f"{where} has seed {image['seed']}, but {CONFIG_FILE}'s seed gives {expected}: "
                                  "it was rendered by another run (two generators on one folder?)")
            if self.resolution is not None and [image.get("width"), image.get("height")] != self.resolution:
                self.report.error(f"{where} is {image.get('width')}x{image.get('height')}, but {CONFIG_FILE} "
                                  f"renders {self.resolution[0]}x{self.resolution[1]}")

    def _expected_seed(self, index: int) -> int | None:
        assert self.seed is not None
        if self.pairs is None:
            return plan.image_seed(self.seed, index)
        if not 0 <= index < len(self.pairs):
            return None
        return plan.variant_seed(*self.pairs[index])
