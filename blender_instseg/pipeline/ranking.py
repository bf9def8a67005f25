"""Rank images by how badly the model does on them, and turn the worst into a variant plan.

The score of an image combines the error terms the issue names, per ground-truth instance g
(matched greedily at mask IoU 0.5 by stock COCOeval, predictions >= the score threshold):

* missed instance: error 1;
* matched instance: error 1 - ((1 - b) * mask IoU + b * Boundary IoU), so a sloppy outline costs
  even when the mask overlaps well (b = ``ScoreWeights.boundary``);
* heavy occlusion: instance g weighs 1 + o * (1 - visible_fraction), so errors on objects that are
  mostly hidden count more (o = ``ScoreWeights.occlusion``); occlusion alone, predicted well, adds
  nothing;
* false positives: each weighs ``ScoreWeights.false_positive`` with error 1.

score = (sum of w_g * error_g + f * FP) / (sum of w_g + f * FP), in [0, 1]: 0 for a perfect image,
1 when nothing is right. With b = o = 0 and f = 0.5 this is ``core.evaluation.metrics.image_error`` (1 - PQ).
Normalising by the instance count keeps crowded images from winning on size alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pycocotools.cocoeval import COCOeval

from ..core.evaluation import metrics as M
from ..core.evaluation.inputs import load_ground_truth, load_predictions


@dataclass(frozen=True)
class ScoreWeights:
    boundary: float = 0.5
    occlusion: float = 1.0
    false_positive: float = 0.5


@dataclass
class ImageScore:
    """One image's score and the terms behind it (recorded in loop.json)."""

    image_id: int
    seed: int | None
    index: int | None
    file_name: str | None
    score: float
    n_gt: int
    n_missed: int
    n_false_pos: int
    mean_mask_iou: float | None
    mean_boundary_iou: float | None
    occlusion: float  # mean (1 - visible_fraction) over the image's instances

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def score_images(gt: str | Path | dict, predictions: str | Path | list, *, score_threshold: float = 0.3,
                 dilation_ratio: float = 0.02, weights: ScoreWeights = ScoreWeights()) -> list[ImageScore]:
    """Score every ground-truth image, worst first (ties: more misses + false positives, then image id).

    Raises ``metrics.InputError`` (one line) on bad ground truth or predictions.
    """
    coco_gt, _ = load_ground_truth(gt)
    coco_dt = load_predictions(predictions, coco_gt)
    segm = M.run_eval(COCOeval(coco_gt, coco_dt, iouType="segm"))
    bres = M.boundary_ious(segm, dilation_ratio)
    matches = M.per_image_matches(segm, score_threshold)
    b, o, f = weights.boundary, weights.occlusion, weights.false_positive
    rows = []
    for img_id in sorted(coco_gt.imgs):
        info = coco_gt.imgs[img_id]
        real = [a for a in coco_gt.imgToAnns.get(img_id, []) if not a["iscrowd"]]
        rec = matches.get(int(img_id), {"pairs": [], "fp": 0})
        matched = {g: (miou, bres.pair_biou.get((d, g), 0.0)) for d, g, miou in rec["pairs"]}
        total_w = err = occ = 0.0
        for a in real:
            vis = a.get("visible_fraction")
            hidden = 1.0 - float(vis) if isinstance(vis, (int, float)) and math.isfinite(vis) else 0.0
            w = 1.0 + o * hidden
            occ += hidden
            if a["id"] in matched:
                miou, biou = matched[a["id"]]
                e = 1.0 - ((1.0 - b) * miou + b * biou)
            else:
                e = 1.0
            total_w += w
            err += w * e
        fp = int(rec["fp"])
        denom = total_w + f * fp
        score = (err + f * fp) / denom if denom > 0 else 0.0
        pairs = list(matched.values())
        rows.append(ImageScore(
            image_id=int(img_id), seed=info.get("seed"), index=info.get("index"), file_name=info.get("file_name"),
            score=float(score), n_gt=len(real), n_missed=len(real) - sum(1 for a in real if a["id"] in matched),
            n_false_pos=fp,
            mean_mask_iou=sum(p[0] for p in pairs) / len(pairs) if pairs else None,
            mean_boundary_iou=sum(p[1] for p in pairs) / len(pairs) if pairs else None,
            occlusion=occ / len(real) if real else 0.0))
    # ties (e.g. every image 1.0 under a weak model) go to the image with more errors in absolute terms
    rows.sort(key=lambda r: (-r.score, -(r.n_missed + r.n_false_pos), r.image_id))
    return rows


def select_seeds(scores: list[ImageScore], budget: int, per_seed: int,
                 used: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """A variant plan for ``budget`` images around the worst images' seeds, worst first.

    ceil(budget / per_seed) seeds get the budget in near-equal shares (the worst get the remainder).
    Only images with a seed and a score above 0 are mined; when fewer qualify, each gets more
    variants, and when none does, the images are taken in order. ``used`` counts variants of each
    seed made by earlier rounds, so new variants start after them (``first``).
    """
    if budget <= 0:
        return []
    if per_seed < 1:
        raise ValueError(f"per_seed must be >= 1, got {per_seed}")
    with_seed = [s for s in scores if isinstance(s.seed, int)]
    if not with_seed:
        raise ValueError("no mined image has a seed: is the dataset made by this generator (images[].seed)?")
    candidates = [s for s in with_seed if s.score > 0] or with_seed
    n = min(math.ceil(budget / per_seed), len(candidates))
    base, extra = divmod(budget, n)
    used = used or {}
    plan = []
    for k, s in enumerate(candidates[:n]):
        assert s.seed is not None
        count = base + (1 if k < extra else 0)
        plan.append({"seed": int(s.seed), "count": count, "first": int(used.get(int(s.seed), 0)),
                     "why": s.to_dict()})
    return plan
