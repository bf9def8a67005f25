"""COCO mask AP, Boundary AP and the breakdowns, on top of stock pycocotools ``COCOeval``.

Every AP here is computed by pycocotools' own matching and accumulation, so the numbers follow
the COCO protocol exactly. What changes between runs is only the IoU matrix fed to it or which
ground truth is marked "ignore":

* ``segm``      stock ``COCOeval(iouType="segm")``; its IoU matrices are then reused.
* ``boundary``  the same, with IoU = min(mask IoU, Boundary IoU) (official Boundary AP). Boundary
                IoU is computed only for pairs whose mask IoU reaches the lowest IoU threshold: any
                other pair cannot match at any threshold whatever its boundary, so the AP is exact.
* occlusion     one run per ``visible_fraction`` bucket, with ground truth outside the bucket
                marked ignore (what COCO does for area ranges), reusing the IoU matrices.

The inputs come from ``inputs.load_ground_truth`` / ``load_predictions``, which check them
before pycocotools sees them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..formats.rle_counts import decode_windows
from .boundary import crop_bands, dilation_pixels
from .fast_cocoeval import GivenIoUEvaluator
from .inputs import InputError, quiet

log = logging.getLogger(__name__)

OCCLUSION_EDGES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
SIZE_RANGES = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10)}


# --------------------------------------------------------------------------------------------
# COCOeval variants
# --------------------------------------------------------------------------------------------

@dataclass
class BoundaryResult:
    """Boundary IoU of every candidate pair and the matrices used for Boundary AP."""

    ious: dict                                  # (img, cat) -> min(mask IoU, boundary IoU) matrix
    pair_biou: dict[tuple[int, int], float] = field(default_factory=dict)  # (dt id, gt id) -> boundary IoU


def _ordered(ev: COCOeval, img: int, cat: int) -> tuple[list[dict], list[dict]]:
    """(detections, ground truth) of one cell, in the order stock computeIoU uses."""
    gts = ev._gts[img, cat]
    dts = ev._dts[img, cat]
    order = np.argsort([-d["score"] for d in dts], kind="mergesort")
    dts = [dts[i] for i in order][: ev.params.maxDets[-1]]
    return dts, gts


def boundary_ious(segm: COCOeval, dilation_ratio: float) -> BoundaryResult:
    """min(mask IoU, boundary IoU) matrices for Boundary AP, from a finished stock segm run.

    Boundary IoU is computed for pairs with mask IoU >= the lowest IoU threshold only (others
    keep their mask IoU: below every threshold either way). Each mask of such a pair is decoded
    once, only inside its own bounding box (``rle_counts.decode_windows``, one vectorised parse
    per batch); its band is one OpenCV erosion of that crop with a zero border, which equals the
    official full-image band (the mask is zero outside its box, and the image border counts as
    zero too). A pair's intersection is counted on the overlap of the two boxes.
    """
    t_min = float(np.min(segm.params.iouThrs))
    out = BoundaryResult(ious={})
    slot: dict[tuple[str, int], int] = {}  # ("d"|"g", annotation id) -> mask slot
    rles: list[dict] = []
    band_px: list[int] = []  # band width of each slot's image
    pairs: list[tuple[np.ndarray, int, int, int, int, int, int]] = []  # (combined, row, col, d/g slot, d/g id)
    for key, m in segm.ious.items():
        if len(m) == 0:
            out.ious[key] = m
            continue
        m = np.asarray(m, np.float64)
        dts, gts = _ordered(segm, *key)
        crowd = np.array([bool(g["iscrowd"]) for g in gts])
        out.ious[key] = combined = m.copy()
        rows, cols = np.nonzero((m >= t_min) & ~crowd[None, :])
        if not len(rows):
            continue
        img = segm.cocoGt.imgs[key[0]]
        d = dilation_pixels(int(img["height"]), int(img["width"]), dilation_ratio)
        for r, c in zip(rows.tolist(), cols.tolist()):
            ends = []
            for kind, ann in (("d", dts[r]), ("g", gts[c])):
                k = slot.setdefault((kind, ann["id"]), len(rles))
                if k == len(rles):
                    rles.append(ann["segmentation"])
                    band_px.append(d)
                ends.append(k)
            pairs.append((combined, r, c, ends[0], ends[1], dts[r]["id"], gts[c]["id"]))
    if not pairs:
        return out

    boxes = mask_utils.toBbox(rles).reshape(-1, 4).astype(np.int64)
    windows = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    crops: list[np.ndarray] = []
    start, budget = 0, 0
    for k in range(len(rles)):  # decode in batches of bounded memory
        budget += int((boxes[k, 2] + 1) * (boxes[k, 3] + 1))
        if budget > 4_000_000 or k == len(rles) - 1:
            crops += decode_windows(rles[start:k + 1], windows[start:k + 1])
            start, budget = k + 1, 0
    bands = crop_bands(crops, band_px)
    counts = [int(np.count_nonzero(b)) for b in bands]

    for combined, r, c, i, j, d_id, g_id in pairs:
        (ax0, ay0), (bx0, by0) = windows[i, :2], windows[j, :2]
        x0, y0 = max(ax0, bx0), max(ay0, by0)
        x1, y1 = min(windows[i, 2], windows[j, 2]), min(windows[i, 3], windows[j, 3])
        inter = 0
        if x1 > x0 and y1 > y0:
            a, b = bands[i], bands[j]
            inter = int(np.count_nonzero(a[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0] & b[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]))
        union = counts[i] + counts[j] - inter
        v = inter / union if union > 0 else 0.0
        out.pair_biou[d_id, g_id] = v
        combined[r, c] = min(combined[r, c], v)
    return out


def run_eval(ev: COCOeval) -> COCOeval:
    with quiet():
        ev.evaluate()
        ev.accumulate()
        if len(ev.params.areaRng) == 4:
            ev.summarize()
    return ev


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(np.mean(v)) if v.size else -1.0


def ap_from(ev: COCOeval, iou: float | None = None, cat_index: int | None = None, area_index: int = 0) -> float:
    """AP as summarize() computes it (maxDets = last), optionally at one IoU or for one category."""
    s = ev.eval["precision"]
    if iou is not None:
        s = s[np.flatnonzero(np.isclose(ev.params.iouThrs, iou))]
    s = s[:, :, :, area_index, -1]
    if cat_index is not None:
        s = s[:, :, cat_index]
    return _mean_valid(s)


def stats_dict(ev: COCOeval) -> dict[str, float]:
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


# --------------------------------------------------------------------------------------------
# Per-image matching at IoU 0.5 and the score threshold
# --------------------------------------------------------------------------------------------

def _iou50_records(segm: COCOeval) -> Iterator[tuple[dict, int]]:
    """(evalImgs record, index of IoU 0.5) for every image x category record of area "all": the
    matching that per_image_matches and best_f1_threshold read."""
    p = segm.params
    t0 = int(np.flatnonzero(np.isclose(p.iouThrs, 0.5))[0])
    for e in segm.evalImgs:
        if e is not None and e["aRng"] == p.areaRng[0]:
            yield e, t0


def per_image_matches(segm: COCOeval, score_threshold: float) -> dict[int, dict]:
    """Per image: matched (dt id, gt id, mask IoU) pairs at IoU 0.5, misses and false positives.

    Reads stock COCOeval's own greedy matching (area "all", maxDets 100, IoU 0.5). Matching runs
    in score order, so keeping detections >= threshold keeps exactly their matches. Detections
    matched to crowd ground truth, and crowd ground truth, count as neither hit nor miss.
    """
    out: dict[int, dict] = {int(i): {"pairs": [], "tp": 0, "fp": 0, "fn": 0, "n_pred": 0, "n_gt": 0}
                            for i in segm.params.imgIds}
    for e, t0 in _iou50_records(segm):
        img, cat = int(e["image_id"]), int(e["category_id"])
        rec = out[img]
        scores = np.asarray(e["dtScores"], np.float64)
        keep = scores >= score_threshold
        dtm = np.asarray(e["dtMatches"][t0])
        dtig = np.asarray(e["dtIgnore"][t0]).astype(bool)
        gtig = np.asarray(e["gtIgnore"]).astype(bool)
        kept_ids = {d for d, k in zip(e["dtIds"], keep) if k}
        ious = segm.ious[img, cat]
        dts, gts = _ordered(segm, img, cat)
        row = {d["id"]: r for r, d in enumerate(dts)}
        col = {g["id"]: c for c, g in enumerate(gts)}
        tp = 0
        for d_id, m, ig, k in zip(e["dtIds"], dtm, dtig, keep):
            if not k or ig:
                continue
            rec["n_pred"] += 1
            if m > 0:
                tp += 1
                rec["pairs"].append((int(d_id), int(m), float(ious[row[d_id], col[int(m)]])))
            else:
                rec["fp"] += 1
        n_gt = int((~gtig).sum())
        rec["n_gt"] += n_gt
        matched_gt = sum(1 for g_id, gm, ig in zip(e["gtIds"], e["gtMatches"][t0], gtig)
                         if not ig and gm > 0 and int(gm) in kept_ids)
        rec["tp"] += tp
        rec["fn"] += n_gt - matched_gt
    return out


def best_f1_threshold(segm: COCOeval) -> dict[str, float]:
    """The score threshold with the best F1 (IoU 0.5, categories matter), its precision and recall.

    Score scales differ between models (focal-loss scores sit low; a score that multiplies a class
    probability in sits lower still), so no fixed display threshold suits every checkpoint: this
    picks one from held-out data. Reads stock COCOeval's greedy matching (area "all", maxDets 100),
    in which keeping the detections >= t keeps exactly their matches, so one sort gives every t.
    The threshold returned is the lowest score kept at the best F1 (0.0 with no detections).
    """
    none = {"score_threshold": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    scores, hits, n_gt = [], [], 0
    for e, t0 in _iou50_records(segm):
        keep = ~np.asarray(e["dtIgnore"][t0], bool)
        scores.append(np.asarray(e["dtScores"], np.float64)[keep])
        hits.append(np.asarray(e["dtMatches"][t0])[keep] > 0)
        n_gt += int((~np.asarray(e["gtIgnore"], bool)).sum())
    if not scores or n_gt == 0 or not sum(len(s) for s in scores):
        return none
    score, hit = np.concatenate(scores), np.concatenate(hits)
    order = np.argsort(-score, kind="stable")
    score, hit = score[order], hit[order]
    tp = np.cumsum(hit)
    kept = np.arange(1, len(score) + 1)
    last = np.r_[score[1:] != score[:-1], True]  # a threshold keeps all of a tied score or none
    precision, recall = tp / kept, tp / n_gt
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    f1 = np.where(last, f1, -1.0)
    i = int(np.argmax(f1))
    if f1[i] <= 0:  # no detection is right: no threshold is better than another
        return none
    return {"score_threshold": float(score[i]), "f1": float(f1[i]), "precision": float(precision[i]),
            "recall": float(recall[i])}


def image_error(rec: dict) -> float:
    """1 - panoptic quality of one image: 1 - sum(IoU of matches) / (TP + FP/2 + FN/2).

    One number that grows with missed objects, false positives and sloppy masks alike; 0 for a
    perfect image (and for an image with nothing in it and nothing predicted), 1 when nothing matches.
    """
    denom = rec["tp"] + 0.5 * rec["fp"] + 0.5 * rec["fn"]
    if denom == 0:
        return 0.0
    return 1.0 - sum(p[2] for p in rec["pairs"]) / denom


# --------------------------------------------------------------------------------------------
# Everything together
# --------------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """The metrics dict plus the finished evaluators (for plots)."""

    metrics: dict
    segm: COCOeval
    boundary: COCOeval
    matches: dict[int, dict]


def compute_metrics(gt: COCO, dt: COCO, *, score_threshold: float = 0.5, dilation_ratio: float = 0.02,
                    worst: int = 10, occlusion_edges: tuple[float, ...] = OCCLUSION_EDGES) -> Evaluation:
    """Run every evaluation on loaded ground truth and predictions; return the metrics.json content."""
    if not math.isfinite(score_threshold):
        raise InputError(f"score threshold must be a finite number, got {score_threshold}")
    if not math.isfinite(dilation_ratio) or dilation_ratio <= 0:
        raise InputError(f"dilation ratio must be > 0, got {dilation_ratio}")
    clock, cpu_clock = time.perf_counter(), time.process_time()
    timing: dict[str, float] = {}
    timing_cpu: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock, cpu_clock
        now, cpu_now = time.perf_counter(), time.process_time()
        timing[name] = round(now - clock, 4)
        timing_cpu[name] = round(cpu_now - cpu_clock, 4)
        clock, cpu_clock = now, cpu_now

    segm = run_eval(COCOeval(gt, dt, iouType="segm"))
    lap("segm")
    bres = boundary_ious(segm, dilation_ratio)
    lap("boundary_iou")
    given = GivenIoUEvaluator(segm)
    bnd = given.run(bres.ious)
    with quiet():
        bnd.summarize()
    lap("boundary_ap")

    cats = {c["id"]: c for c in gt.dataset["categories"]}
    gt_anns = gt.dataset["annotations"]
    real = [a for a in gt_anns if not a["iscrowd"]]
    matches = per_image_matches(segm, score_threshold)

    # boundary IoU over pairs matched at mask IoU 0.5 (score >= threshold)
    pair_mask, pair_b = [], []
    for rec in matches.values():
        for d_id, g_id, miou in rec["pairs"]:
            pair_mask.append(miou)
            pair_b.append(bres.pair_biou.get((d_id, g_id), 0.0))
    boundary: dict[str, Any] = dict(stats_dict(bnd))
    boundary["mean_boundary_iou"] = float(np.mean(pair_b)) if pair_b else None
    boundary["mean_mask_iou"] = float(np.mean(pair_mask)) if pair_mask else None
    boundary["n_matched_pairs"] = len(pair_b)
    boundary["dilation_ratio"] = dilation_ratio

    per_category = {}
    for k, cid in enumerate(segm.params.catIds):
        name = str(cats[cid].get("name", cid))
        if name in per_category:  # two categories with one name: keep both
            name = f"{name} (id {cid})"
        per_category[name] = {
            "id": int(cid),
            "AP": ap_from(segm, cat_index=k), "AP50": ap_from(segm, 0.5, cat_index=k),
            "boundary_AP": ap_from(bnd, cat_index=k),
            "n_gt": sum(1 for a in real if a["category_id"] == cid),
            "n_pred": len(dt.getAnnIds(catIds=[cid])),
        }

    by_size = {}
    for a_idx, label in enumerate(segm.params.areaRngLbl[1:], start=1):
        lo, hi = segm.params.areaRng[a_idx]
        by_size[label] = {"AP": ap_from(segm, area_index=a_idx), "boundary_AP": ap_from(bnd, area_index=a_idx),
                          "n_gt": sum(1 for a in real if lo <= a["area"] <= hi), "area_range": [lo, min(hi, 1e10)]}

    lap("breakdowns")
    by_occlusion = _by_occlusion(given, segm, bres, real, occlusion_edges)
    lap("occlusion")

    tp = sum(r["tp"] for r in matches.values())
    fp = sum(r["fp"] for r in matches.values())
    fn = sum(r["fn"] for r in matches.values())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec_ = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec_ / (prec + rec_) if prec + rec_ else 0.0
    at_threshold = {"score_threshold": score_threshold, "iou_threshold": 0.5, "precision": prec,
                    "recall": rec_, "f1": f1, "tp": tp, "fp": fp, "fn": fn}

    worst_images = _worst_images(gt, matches, bres, worst)

    curves = {
        "recall": [float(v) for v in segm.params.recThrs],
        "precision": {f"{t:.2f}": [float(v) for v in _mean_curve(segm.eval["precision"][i])]
                      for i, t in enumerate(segm.params.iouThrs)},
    }
    metrics = {
        "segm": stats_dict(segm),
        "boundary": boundary,
        "per_category": per_category,
        "by_size": by_size,
        "by_occlusion": by_occlusion,
        "at_threshold": at_threshold,
        "best_f1": best_f1_threshold(segm),
        "worst_images": worst_images,
        "counts": {"images": len(gt.getImgIds()), "gt": len(real), "gt_crowd": len(gt_anns) - len(real),
                   "predictions": len(dt.dataset["annotations"]),
                   "predictions_above_threshold": sum(1 for a in dt.dataset["annotations"]
                                                      if a["score"] >= score_threshold)},
        "curves": curves,
        "params": {"score_threshold": score_threshold, "dilation_ratio": dilation_ratio,
                   "iou_thresholds": [round(float(t), 2) for t in segm.params.iouThrs],
                   "max_dets": list(segm.params.maxDets), "occlusion_edges": list(occlusion_edges)},
    }
    lap("rest")
    metrics["timing_s"] = timing
    metrics["timing_cpu_s"] = timing_cpu
    return Evaluation(metrics=metrics, segm=segm, boundary=bnd, matches=matches)


def _mean_curve(prec_t: np.ndarray) -> np.ndarray:
    """Precision at each recall threshold averaged over categories (area all, maxDets 100); -1 when none."""
    s = prec_t[:, :, 0, -1]  # R x K
    valid = s > -1
    n = valid.sum(1)
    return np.where(n > 0, np.where(valid, s, 0).sum(1) / np.maximum(n, 1), -1.0)


def _by_occlusion(given: GivenIoUEvaluator, segm: COCOeval, bres: BoundaryResult, real: list[dict],
                  edges: tuple[float, ...]) -> dict:
    """AP per visible_fraction bucket: ground truth outside the bucket is marked ignore.

    Detections matched to ignored ground truth are ignored too (not false positives); a detection
    that matches nothing is a false positive in every bucket, since a prediction has no
    visible_fraction of its own. So bucket APs are comparable with each other, not with the overall AP.
    """
    known = [a for a in real if isinstance(a.get("visible_fraction"), (int, float))]
    result: dict[str, Any] = {"buckets": [], "n_unknown": len(real) - len(known)}
    if not known:
        return result
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = {a["id"] for a in known
                  if lo <= a["visible_fraction"] < hi or (last and a["visible_fraction"] == hi)}
        ignore = {a["id"] for a in real if a["id"] not in inside}
        entry: dict[str, Any] = {"range": [lo, hi], "label": f"{lo:.2f}-{hi:.2f}", "n_gt": len(inside)}
        if inside:
            ev = given.run(segm.ious, ignore, all_areas=False)
            entry.update(AP=ap_from(ev), AP50=ap_from(ev, 0.5))
            entry.update(boundary_AP=ap_from(given.run(bres.ious, ignore, all_areas=False)))
        else:
            entry.update(AP=-1.0, AP50=-1.0, boundary_AP=-1.0)
        result["buckets"].append(entry)
    return result


def _worst_images(gt: COCO, matches: dict[int, dict], bres: BoundaryResult, n: int) -> list[dict]:
    rows = []
    for img_id, rec in matches.items():
        err = image_error(rec)
        if err <= 0:
            continue
        info = gt.imgs[img_id]
        ious = [p[2] for p in rec["pairs"]]
        bious = [bres.pair_biou.get((p[0], p[1]), 0.0) for p in rec["pairs"]]
        rows.append({
            "image_id": img_id, "seed": info.get("seed"), "index": info.get("index"),
            "file_name": info.get("file_name"), "error": round(err, 6),
            "n_gt": rec["n_gt"], "n_pred": rec["n_pred"], "n_missed": rec["fn"], "n_false_pos": rec["fp"],
            "mean_matched_iou": float(np.mean(ious)) if ious else None,
            "mean_matched_boundary_iou": float(np.mean(bious)) if bious else None,
        })
    rows.sort(key=lambda r: (-r["error"], -(r["n_missed"] + r["n_false_pos"]), r["image_id"]))
    return rows[: max(0, n)]
