"""``evaluate``: predict a dataset's held-out images with a checkpoint, then score them with core.evaluation.evaluate.

Scoring lives in ``core.evaluation.evaluate`` (torch-free, shared with the Blender panel); this command only
produces the predictions with a low score threshold so AP sees the whole precision-recall curve.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..core import protocol
from ..core.fileio import atomic_write_json, read_json
from .checkpoint import categories_match, load_model
from .cli_args import check_fraction, check_image_size
from .data import DataError, check_images_readable, class_agnostic, load_coco_source
from .device import resolve_device
from ..core.cliargs import check_out_folder
from .predict import run_inference

log = logging.getLogger(__name__)


def folded_coco(ann_path: Path, category_id: int, categories: list[dict]) -> dict:
    """The COCO file at ``ann_path`` with every annotation in the one category ``category_id``."""
    coco = read_json(ann_path, "annotations file")
    anns = [{**a, "category_id": category_id} for a in coco.get("annotations", [])]
    return {**coco, "annotations": anns, "categories": categories}


def pick_annotations(data: str, split: str | None) -> Path:
    """The file to score against: a JSON as given, else annotations_<split>.json, annotations_val.json, annotations.json."""
    p = Path(data)
    if not p.exists():
        raise DataError(f"dataset not found: {p}")
    if p.is_file():
        return p
    names = [f"annotations_{split}.json"] if split else ["annotations_val.json", "annotations_test.json", "annotations.json"]
    for name in names:
        if (p / name).is_file():
            return p / name
    raise DataError(f"no {' or '.join(names)} in {p}")




def run(args: argparse.Namespace) -> int:
    try:
        from ..core.evaluation.evaluate import evaluate
    except ImportError as exc:  # pragma: no cover - core.evaluation ships with the package
        raise DataError(f"core.evaluation is not available: {exc}") from None
    # every check before the first write: arguments, output folder, dataset and its images, device, checkpoint
    check_image_size(args.image_size)
    check_fraction(args.score_threshold, "--score-threshold", closed=True)
    out = check_out_folder(args.out)
    ann_path = pick_annotations(args.data, args.split)
    src = load_coco_source(ann_path)
    check_images_readable([r.path for r in src.records])
    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, device)
    if args.class_agnostic:
        if len(ckpt["categories"]) != 1:
            raise DataError(f"--class-agnostic needs a checkpoint of one category; {args.checkpoint} has "
                            f"{len(ckpt['categories'])}")
        src = class_agnostic(src, ckpt["categories"][0])
        ann_path = atomic_write_json(out / "annotations_object.json", folded_coco(ann_path, src.categories[0]["id"],
                                                                                  src.categories))
    elif not categories_match(src.categories, ckpt["categories"]):
        hint = " (a class-agnostic checkpoint: pass --class-agnostic)" if len(ckpt["categories"]) == 1 else ""
        raise DataError(f"categories of {ann_path} differ from the checkpoint's{hint}")
    size = int(args.image_size or ckpt.get("train_config", {}).get("image_size", 256))
    items = [(r.image_id, r.path) for r in src.records]
    results, _ = run_inference(model, items, src.category_ids, size, device,
                               refine=False if args.no_refine else None, events=True)
    preds_path = atomic_write_json(out / "predictions.json", results)
    metrics = evaluate(ann_path, results, out_dir=out, score_threshold=args.score_threshold, plots=not args.no_plots)
    summary = {"mask_AP": metrics.get("segm", {}).get("AP"), "mask_AP50": metrics.get("segm", {}).get("AP50"),
               "boundary_AP": metrics.get("boundary", {}).get("AP")}
    protocol.emit("done", out=str(out), predictions=str(preds_path), metrics=summary)
    return 0

