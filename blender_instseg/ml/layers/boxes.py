"""Box operations in pure torch (no torchvision here): IoU, delta coding, NMS, anchors, clipping.

Conventions, shared by every detector in ``ml/models`` (Mask R-CNN, YOLACT):

* Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates: pixel ``i`` covers ``[i, i + 1)``,
  so a box around pixels 3..5 is ``(3, 3, 6, 6)`` and its width is ``x2 - x1`` (no ``+ 1``, as in
  detectron2 and torchvision).
* Every function works on any device and dtype and keeps them; nothing is moved to numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

# detectron2's / torchvision's bound on dw, dh before exp(): a box may grow at most 1000/16 times.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``(..., 4)`` boxes; degenerate boxes (x2 < x1 or y2 < y1) count as 0, never negative."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``a`` (M, 4) and ``b`` (N, 4) -> (M, N); 0 where both boxes are empty (no NaN)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)  # union 0 => inter 0 => IoU 0


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)`` (the form YOLACT/SSD priors are written in)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def encode_boxes(targets: torch.Tensor, references: torch.Tensor,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Regression deltas that turn ``references`` (anchors/proposals) into ``targets``; both (..., 4).

    The Faster R-CNN parametrisation (detectron2 ``Box2BoxTransform.get_deltas``):
    ``dx = wx * (tx - rx) / rw``, ``dy`` likewise, ``dw = ww * log(tw / rw)``, ``dh`` likewise, with
    centres and sizes of the two boxes. The weights rescale the deltas so the regression loss sees
    values of about unit size: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the box head.
    References must have positive width and height.
    """
    wx, wy, ww, wh = weights
    rw = references[..., 2] - references[..., 0]
    rh = references[..., 3] - references[..., 1]
    rx = references[..., 0] + 0.5 * rw
    ry = references[..., 1] + 0.5 * rh
    tw = targets[..., 2] - targets[..., 0]
    th = targets[..., 3] - targets[..., 1]
    tx = targets[..., 0] + 0.5 * tw
    ty = targets[..., 1] + 0.5 * th
    return torch.stack((wx * (tx - rx) / rw, wy * (ty - ry) / rh, ww * torch.log(tw / rw), wh * torch.log(th / rh)), -1)


def decode_boxes(deltas: torch.Tensor, references: torch.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 scale_clamp: float = DEFAULT_SCALE_CLAMP) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: apply ``deltas`` (..., 4) to ``references`` (broadcastable, ..., 4).

    ``dw``/``dh`` are clamped to ``scale_clamp`` before ``exp`` so an untrained head cannot produce
    inf boxes. Class-specific deltas (K, C, 4) decode against proposals given as (K, 1, 4).
    """
    wx, wy, ww, wh = weights
    rw = references[..., 2] - references[..., 0]
    rh = references[..., 3] - references[..., 1]
    rx = references[..., 0] + 0.5 * rw
    ry = references[..., 1] + 0.5 * rh
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = (deltas[..., 2] / ww).clamp(max=scale_clamp)
    dh = (deltas[..., 3] / wh).clamp(max=scale_clamp)
    cx, cy = dx * rw + rx, dy * rh + ry
    w, h = torch.exp(dw) * rw, torch.exp(dh) * rh
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), -1)


def clip_boxes(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Clamp (..., 4) boxes to the image ``[0, W] x [0, H]`` (a new tensor)."""
    h, w = image_hw
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), -1)


def nonempty_boxes(boxes: torch.Tensor, min_size: float = 0.0) -> torch.Tensor:
    """Boolean mask of boxes whose width and height are both > ``min_size``."""
    return ((boxes[..., 2] - boxes[..., 0]) > min_size) & ((boxes[..., 3] - boxes[..., 1]) > min_size)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """Greedy NMS: indices of the kept boxes, by descending score (torchvision ``nms`` semantics).

    A box is dropped when its IoU with a higher-scored kept box is > ``iou_threshold``. Equal scores
    keep the lower index first (stable sort). Cost: one K x K IoU matrix on the boxes' device (O(K^2)
    time and memory: 16 MB of bools for K = 4000), then a greedy pass over it in numpy on the CPU
    with one vectorised row update per *kept* box (per-element torch ops cost ~10x more here). Meant
    for at most a few thousand boxes (take a pre-NMS top-k first). ``max_keep`` stops once that many
    are kept.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms needs boxes (K, 4) and scores (K,), got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    order = torch.sort(scores, descending=True, stable=True).indices
    if order.numel() == 0 or (max_keep is not None and max_keep <= 0):
        return order[:0]
    suppress = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()
    limit = order.numel() if max_keep is None else max_keep
    removed = np.zeros(order.numel(), dtype=bool)
    keep: list[int] = []
    for i in range(order.numel()):
        if removed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        removed |= suppress[i]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float,
                max_keep: int | None = None) -> torch.Tensor:
    """NMS within each group (class, or FPN level) independently: indices kept, by descending score.

    One :func:`nms` per group, then the survivors merged by score (ties: lower index first, as one
    stable sort over everything would give), so the IoU matrices cost sum(K_g^2), not K^2.
    ``max_keep`` bounds the merged result (and each group's, which cannot contribute more).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    kept = []
    for g in torch.unique(groups):
        idx = torch.nonzero(groups == g).squeeze(1)
        kept.append(idx[nms(boxes[idx], scores[idx], iou_threshold, max_keep)])
    keep = torch.cat(kept).sort().values
    keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices]
    return keep if max_keep is None else keep[:max_keep]


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Anchors centred on (0, 0): (len(sizes) * len(aspect_ratios), 4), sizes outer, ratios inner.

    ``size`` is sqrt(area); ``aspect_ratio`` is h / w (detectron2 ``DefaultAnchorGenerator``).
    """
    out = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = math.sqrt(size * size / ratio)
            h = ratio * w
            out.append((-w / 2, -h / 2, w / 2, h / 2))
    return torch.tensor(out, dtype=dtype, device=device)


def grid_anchors(cell: torch.Tensor, stride: float, feature_hw: tuple[int, int], offset: float = 0.5) -> torch.Tensor:
    """Tile ``cell`` (A, 4) anchors over an H x W feature map: (H * W * A, 4), ordered (y, x, anchor).

    The order matches a head output of shape (N, A, H, W) permuted to (N, H, W, A). Centres are at
    ``(j + offset) * stride``: with the default 0.5 the anchor sits on the centre of the image
    region its feature cell covers (detectron2's default is 0.0, the cell's corner).
    """
    h, w = feature_hw
    xs = (torch.arange(w, dtype=cell.dtype, device=cell.device) + offset) * stride
    ys = (torch.arange(h, dtype=cell.dtype, device=cell.device) + offset) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack((cx, cy, cx, cy), -1).reshape(-1, 1, 4)
    return (shifts + cell[None]).reshape(-1, 4)


def generate_anchors(feature_hws: Sequence[tuple[int, int]], strides: Sequence[float],
                     sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), *,
                     offset: float = 0.5, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> list[torch.Tensor]:
    """Anchors for every FPN level: a list of (H_l * W_l * A, 4), one per level.

    ``sizes[l]`` are the anchor sizes of level ``l`` (FPN uses one size per level, 32..512 on
    800-pixel images; smaller inputs want smaller sizes), all levels sharing ``aspect_ratios``.
    """
    if not len(feature_hws) == len(strides) == len(sizes):
        raise ValueError(f"anchors need one stride and one size list per level, got {len(feature_hws)} levels, "
                         f"{len(strides)} strides, {len(sizes)} size lists")
    return [grid_anchors(cell_anchors(s, aspect_ratios, dtype=dtype, device=device), stride, hw, offset)
            for hw, stride, s in zip(feature_hws, strides, sizes)]
