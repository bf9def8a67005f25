"""Mask AP on a validation split during training (pycocotools COCOeval, segm), for eval events.

The full report (Boundary AP, breakdowns, plots) is ``core.evaluation.evaluate``; this is the cheap number
that goes into the training stream and learning curves.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from .data import CocoSource


def gt_dict(src: CocoSource) -> dict[str, Any]:
    """The COCO dict of just ``src``'s images (annotations given an area if they lack one)."""
    images, anns = [], []
    for r in src.records:
        images.append({"id": r.image_id, "file_name": str(r.path), "width": r.width, "height": r.height})
        for a in r.anns:
            anns.append({**a, "iscrowd": int(a.get("iscrowd", 0))})
    for i, a in enumerate(anns, 1):
        a.setdefault("id", i)
    return {"images": images, "annotations": anns, "categories": src.categories}


def coco_segm_metrics(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
    """mask_AP, mask_AP50, mask_AP75 (0..1) with pycocotools, its chatter swallowed, plus the score
    threshold with the best F1 on these images (``score_threshold_f1``, core.evaluation.metrics.best_f1_threshold):
    what predict uses by default with this checkpoint."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from ..core.evaluation.metrics import best_f1_threshold

    if not results:
        return {"mask_AP": 0.0, "mask_AP50": 0.0, "mask_AP75": 0.0, "score_threshold_f1": 0.0, "f1": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    best = best_f1_threshold(ev)
    return {"mask_AP": float(max(s[0], 0)), "mask_AP50": float(max(s[1], 0)), "mask_AP75": float(max(s[2], 0)),
            "score_threshold_f1": best["score_threshold"], "f1": best["f1"]}


def mask_ap(model: torch.nn.Module, src: CocoSource, image_size: int, device: torch.device,
            refine: bool | None = None) -> dict[str, float]:
    from .predict import run_inference

    items = [(r.image_id, r.path) for r in src.records]
    results, _ = run_inference(model, items, src.category_ids, image_size, device, refine=refine)
    return coco_segm_metrics(gt_dict(src), results)
