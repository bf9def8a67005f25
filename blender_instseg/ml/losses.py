"""Losses of the model zoo: sigmoid focal loss (class scores), Dice (masks), BCE on points, polar IoU (PolarMask rays)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Summed focal loss (Lin et al.); the caller normalises by the number of positives.

    Most grid cells are background, so plain BCE would be dominated by easy negatives.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * loss).sum()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Per-mask Dice loss (N,) on sigmoid probabilities; insensitive to the fg/bg pixel imbalance."""
    p = torch.sigmoid(logits).flatten(1)
    t = targets.flatten(1)
    inter = (p * t).sum(1)
    denom = (p * p).sum(1) + (t * t).sum(1) + eps
    return 1 - 2 * inter / denom


def point_bce_loss(point_logits: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over sampled points (PointRend's point loss)."""
    if point_logits.numel() == 0:
        return point_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="mean")


def polar_iou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Polar IoU loss of PolarMask (Xie et al. 2020), per row (N,): log(sum max(d, d*) / sum min(d, d*)).

    (N, R) ray lengths, both >= 0. The ratio of the sums approximates IoU of the two polygons from
    the same centre, so all rays are learnt together and their scale is built in (no per-ray
    smooth-L1 weighting); 0 when the rays are equal.
    """
    big = torch.maximum(pred, target).sum(-1)
    small = torch.minimum(pred, target).sum(-1)
    return torch.log(big.clamp(min=eps) / small.clamp(min=eps))
