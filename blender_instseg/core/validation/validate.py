"""``validate`` command: check a dataset the way a strict consumer (pycocotools, detectron2, mmdet) would.

Every ``annotations*.json`` of the dataset is loaded with pycocotools, every mask is decoded, and
what the file claims (area, bbox, ids, categories, image sizes, the instance-id maps and the amodal
extras) is compared with what is actually there (``coco_checks``). Where the dataset has the
semantic or panoptic format (``formats.semantic``, ``formats.panoptic``), they are checked against
the instance annotations of the same image (``semantic_checks``, ``panoptic_checks``); a
YouTube-VIS file beside a COCO file (``formats.vis``) must say what the COCO file says
(``vis_checks``). Problems are collected, not raised, so one run lists all of them; the CLI prints
one line per problem and exits 1.

This module is the driver: which checkers run on which files, in which order.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..cliargs import path_arg
from ..formats.dataset import ANNOTATIONS_FILE, RECORDS_DIR, load_coco
from ..formats.panoptic import PANOPTIC_DIR, PANOPTIC_PREFIX
from ..formats.semantic import SEMANTIC_DIR
from ..formats.vis import vis_name
from .coco_checks import CocoChecker
from .config_checks import ConfigChecker
from .panoptic_checks import PanopticChecker, load_panoptic
from .report import ValidationReport, is_int
from .semantic_checks import SemanticChecker
from .vis_checks import check_vis_file

log = logging.getLogger(__name__)

__all__ = ["ValidationReport", "validate_dataset", "configure_parser", "run"]


def _check_coco_file(report: ValidationReport, base: Path, coco_file: Path, data: dict, sizes: dict[Path, Any],
                     *, has_panoptic: bool, semantic_done: set[Path] | None) -> dict[str, Any]:
    """Check one COCO file and the outputs that go with it; return its summary.

    The COCO checker runs first (its per-image visible masks are what the output checkers
    compare with); then, per image, the semantic map and the panoptic PNG.
    """
    pan = load_panoptic(report, coco_file) if has_panoptic else None
    coco = CocoChecker(report, base, coco_file.name, sizes)
    semantic = (SemanticChecker(report, base, coco_file.name, semantic_done)
                if semantic_done is not None else None)
    panoptic = PanopticChecker(report, base, coco_file.name, pan) if pan is not None else None
    outputs = [c for c in (semantic, panoptic) if c is not None]

    index = coco.check_file(data)
    for out in outputs:
        out.check_file(index)
    per_cat: Counter[str] = Counter()
    for image_id, image in index.images.items():
        anns = index.by_image.get(image_id, [])
        masks = coco.check_image_masks(image, anns) if anns else {}
        for out in outputs:
            out.check_image(image, anns, masks)
        for a in anns:
            if is_int(a.get("category_id")) and a["category_id"] in index.categories:
                per_cat[index.categories[a["category_id"]]] += 1
    empty = sum(1 for i in index.images if not index.by_image.get(i))
    checked = [c.name for c in (panoptic, semantic) if c is not None]
    return {"images": len(data["images"]), "annotations": len(data["annotations"]),
            "empty_images": empty, "per_category": dict(sorted(per_cat.items())), "outputs": checked}


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
    config = ConfigChecker(report, base)
    for f in files:
        try:
            data = load_coco(f)
        except (ValueError, FileNotFoundError, OSError) as exc:
            report.error(str(exc))
            continue
        config.check_images(f.name, data.get("images") or [])
        per_file[f.name] = _check_coco_file(report, base, f, data, sizes, has_panoptic=has_panoptic,
                                            semantic_done=semantic_done)
        vis_file = base / vis_name(f.name)  # an annotated animation's YouTube-VIS view of the same labels
        if f.name.startswith("annotations") and vis_file.is_file():
            per_file[f.name]["outputs"].append(vis_file.name)
            per_file[f.name]["vis"] = check_vis_file(report, vis_file, f, data)
    report.summary = {"files": per_file}
    return report


# --------------------------------------------------------------------------------------------
# CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=path_arg, metavar="DATASET",
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
    if not args.dataset.exists():  # bad input (exit 2), not an invalid dataset (exit 1)
        raise FileNotFoundError(f"dataset not found: {args.dataset}")
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
