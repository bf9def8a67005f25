"""Match predicted instance masks to the instances of an id map (or of a mask stack) by IoU.

The Blender side renders the scene's Object Index pass, so each object already owns a set of
pixels; a prediction "is" the object whose pixels it overlaps best. Matching is one-to-one and
greedy in descending score order, the same rule COCO evaluation uses, so a duplicate prediction
of an already matched object is reported as unmatched instead of stealing it.

Intersections are counted with one ``np.bincount`` over (prediction, instance) codes of the
foreground pixels, so the cost is O(total predicted pixels), not O(P x G x H x W).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Match:
    """One prediction paired with one instance."""

    prediction: int  # index into the predictions given to the matcher
    instance_id: int  # id in the id map (or index into the GT stack for ``match_masks``)
    iou: float


@dataclass
class MatchResult:
    matches: list[Match] = field(default_factory=list)
    unmatched_predictions: list[int] = field(default_factory=list)  # prediction indices, in input order
    missed_instances: list[int] = field(default_factory=list)  # instance ids with pixels but no match
    instance_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # columns of ``iou``
    iou: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float64))  # P x G

    def by_instance(self) -> dict[int, Match]:
        return {m.instance_id: m for m in self.matches}


def _as_stack(masks: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {arr.shape}")
    if shape is not None and arr.shape[0] and arr.shape[1:] != tuple(shape):
        raise ValueError(f"mask size {arr.shape[1:]} differs from the id map size {tuple(shape)}")
    return arr.astype(bool, copy=False)


def iou_with_id_map(pred_masks: np.ndarray, id_map: np.ndarray,
                    ignore_ids: tuple[int, ...] = (0,)) -> tuple[np.ndarray, np.ndarray]:
    """IoU of every prediction with every instance of ``id_map``.

    Returns ``(iou P x G, instance_ids G)``; ``instance_ids`` are the ids present in the map,
    sorted, without ``ignore_ids`` (0 = background by default).
    """
    ids_map = np.asarray(id_map)
    if ids_map.ndim != 2:
        raise ValueError(f"id map must be 2-D, got shape {ids_map.shape}")
    preds = _as_stack(pred_masks, ids_map.shape)
    present, inverse = np.unique(ids_map.ravel(), return_inverse=True)
    keep = ~np.isin(present, np.asarray(ignore_ids, dtype=present.dtype))
    n_labels = present.size
    gt_area = np.bincount(inverse, minlength=n_labels)
    n_pred = preds.shape[0]
    if n_pred:
        p_idx, pix = np.nonzero(preds.reshape(n_pred, -1))
        inter = np.bincount(p_idx * n_labels + inverse[pix], minlength=n_pred * n_labels).reshape(n_pred, n_labels)
        pred_area = np.bincount(p_idx, minlength=n_pred)
    else:
        inter = np.zeros((0, n_labels), np.int64)
        pred_area = np.zeros(0, np.int64)
    inter = inter[:, keep]
    union = pred_area[:, None] + gt_area[keep][None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou.astype(np.float64), present[keep].astype(np.int64)


def iou_masks(pred_masks: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """IoU matrix (P x G) of two mask stacks of the same size (overlapping GT masks allowed)."""
    gt = _as_stack(gt_masks)
    preds = _as_stack(pred_masks, gt.shape[1:] if gt.shape[0] else None)
    p = preds.reshape(preds.shape[0], -1).astype(np.float32)
    g = gt.reshape(gt.shape[0], -1).astype(np.float32)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float64)


def greedy_match(iou: np.ndarray, scores: np.ndarray | list[float] | None, iou_threshold: float,
                 instance_ids: np.ndarray | None = None) -> MatchResult:
    """One-to-one matching: predictions by descending score each take the free instance of highest IoU.

    A pair counts only when its IoU is >= ``iou_threshold``. Ties in score keep input order.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    iou = np.asarray(iou, dtype=np.float64)
    n_pred, n_gt = iou.shape
    ids = np.arange(n_gt, dtype=np.int64) if instance_ids is None else np.asarray(instance_ids, np.int64)
    sc = np.zeros(n_pred) if scores is None else np.asarray(scores, dtype=np.float64)
    if sc.shape != (n_pred,):
        raise ValueError(f"expected {n_pred} scores, got {sc.shape}")
    order = np.argsort(-sc, kind="stable")
    taken = np.zeros(n_gt, bool)
    matches: list[Match] = []
    matched_pred = np.zeros(n_pred, bool)
    for p in order:
        if n_gt == 0:
            break
        row = np.where(taken, -1.0, iou[p])
        g = int(np.argmax(row))
        if row[g] >= iou_threshold and row[g] > 0.0:
            taken[g] = True
            matched_pred[p] = True
            matches.append(Match(int(p), int(ids[g]), float(row[g])))
    return MatchResult(
        matches=matches,
        unmatched_predictions=[int(i) for i in np.flatnonzero(~matched_pred)],
        missed_instances=[int(i) for i in ids[~taken]],
        instance_ids=ids,
        iou=iou,
    )


def match_to_id_map(pred_masks: np.ndarray, id_map: np.ndarray, scores: np.ndarray | list[float] | None = None,
                    iou_threshold: float = 0.5, ignore_ids: tuple[int, ...] = (0,)) -> MatchResult:
    """Match predictions to the instances of a rendered id map (0 = background)."""
    iou, ids = iou_with_id_map(pred_masks, id_map, ignore_ids=ignore_ids)
    return greedy_match(iou, scores, iou_threshold, ids)


def match_masks(pred_masks: np.ndarray, gt_masks: np.ndarray, scores: np.ndarray | list[float] | None = None,
                iou_threshold: float = 0.5) -> MatchResult:
    """Match predictions to a stack of GT masks; instance ids are the GT stack indices."""
    return greedy_match(iou_masks(pred_masks, gt_masks), scores, iou_threshold)
