"""RoIAlign in pure torch: bilinear samples taken with one ``F.grid_sample`` call, averaged per bin.

Semantics are those of ``torchvision.ops.roi_align`` (= detectron2 ``ROIAlignV2`` with
``aligned=True``), checked against its CPU kernel (``roi_align_common.h``,
``pre_calc_for_bilinear_interpolate``):

* A RoI ``(x1, y1, x2, y2)`` in input pixels becomes ``(x1, ..) * spatial_scale``, minus 0.5 with
  ``aligned=True`` (pixel centres sit at half-integers of the continuous box coordinates, so
  sample positions must be shifted to index space). Without ``aligned`` the RoI is at least 1x1.
* Each of the ``out_h x out_w`` bins holds ``sampling_ratio x sampling_ratio`` regularly spaced
  samples (at ``(k + 0.5) / s`` of the bin), averaged.
* A sample is bilinear in the feature map with torchvision's boundary rule: a sample with
  ``y < -1`` or ``y > H`` (or ``x`` outside ``[-1, W]``) is 0; otherwise its coordinates are clamped
  to ``[0, H - 1]`` / ``[0, W - 1]`` (so ``[-1, 0]`` reads the border pixel at full weight). This is
  ``grid_sample(padding_mode="border")`` times a validity mask; ``padding_mode="zeros"`` would instead
  fade border samples towards 0.

Differences: ``sampling_ratio`` must be >= 1 (torchvision's adaptive ``<= 0``,
``ceil(roi_size / out_size)`` samples per RoI, gives every RoI its own sample count and cannot be
one batched call). Gradients reach the features exactly as torchvision's backward does; they also
reach the RoI coordinates through ``grid_sample``, which torchvision does not provide (detach the
RoIs, as Mask R-CNN does with proposals, if that is not wanted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .boxes import box_area


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = True) -> torch.Tensor:
    """Pool ``rois`` (K, 5) = (batch index, x1, y1, x2, y2 in input pixels) from ``features`` (N, C, H, W).

    Returns (K, C, out_h, out_w). All RoIs of all images are sampled by one ``grid_sample`` call over
    the batch: the sample grids are laid out per image (padded to the image with the most RoIs), so
    no per-RoI copy of the feature map is made.
    """
    if features.ndim != 4:
        raise ValueError(f"roi_align needs features (N, C, H, W), got shape {tuple(features.shape)}")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_align needs rois (K, 5) = (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}")
    if sampling_ratio < 1:
        raise ValueError(f"roi_align needs sampling_ratio >= 1 (adaptive sampling is not supported), got {sampling_ratio}")
    n, c, h, w = features.shape
    oh, ow = _pair(output_size)
    s = sampling_ratio
    k = rois.shape[0]
    if k == 0:
        return features.new_zeros((0, c, oh, ow))
    rois = rois.to(features.dtype)
    batch = rois[:, 0].long()
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in (1, 2, 3, 4))
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    # sample t of a row, t = bin * s + k, sits at x1 + (t + 0.5) / (ow * s) * rw: (j + (k + .5) / s) bins
    tx = (torch.arange(ow * s, device=features.device, dtype=features.dtype) + 0.5) / (ow * s)
    ty = (torch.arange(oh * s, device=features.device, dtype=features.dtype) + 0.5) / (oh * s)
    xs = x1[:, None] + tx[None] * rw[:, None]  # (K, ow*s) in feature index space
    ys = y1[:, None] + ty[None] * rh[:, None]  # (K, oh*s)
    valid = (((ys >= -1) & (ys <= h))[:, :, None] & ((xs >= -1) & (xs <= w))[:, None, :]).to(features.dtype)
    gx = (2 * xs + 1) / w - 1  # grid_sample(align_corners=False): index i <-> (2i + 1) / size - 1
    gy = (2 * ys + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)  # (K, oh*s, ow*s, 2)

    # slot of each RoI among its image's RoIs -> one padded grid (N, Kmax * oh*s, ow*s, 2)
    slot = (F.one_hot(batch, n).cumsum(0) - 1).gather(1, batch[:, None])[:, 0]
    kmax = int(slot.max()) + 1
    padded = grid.new_zeros((n, kmax, oh * s, ow * s, 2))
    padded[batch, slot] = grid
    sampled = F.grid_sample(features, padded.reshape(n, kmax * oh * s, ow * s, 2), mode="bilinear",
                            padding_mode="border", align_corners=False)  # (N, C, Kmax*oh*s, ow*s)
    sampled = sampled.reshape(n, c, kmax, oh * s, ow * s)[batch, :, slot]  # (K, C, oh*s, ow*s)
    sampled = sampled * valid[:, None]
    return F.avg_pool2d(sampled, s) if s > 1 else sampled


def assign_fpn_levels(boxes: torch.Tensor, min_level: int, max_level: int, canonical_size: float = 224.0,
                      canonical_level: int = 4) -> torch.Tensor:
    """FPN level of each (K, 4) box, as an index from 0 (= ``min_level``): FPN paper eq. (1).

    ``k = floor(canonical_level + log2(sqrt(w * h) / canonical_size))``, clamped to
    ``[min_level, max_level]``. With the paper's 224 (ImageNet's size, for 800-pixel images) a box goes
    to the level where it spans 14-28 feature cells; on 256-pixel inputs nearly every object would
    then land on P2. Callers with small inputs pass a smaller ``canonical_size`` (Mask R-CNN here uses
    112: 7-14 cells, one to two per bin of a 7x7 output).
    """
    size = box_area(boxes).sqrt()
    level = torch.floor(canonical_level + torch.log2(size / canonical_size + 1e-8))  # eps as detectron2
    return level.clamp(min_level, max_level).long() - min_level


def multilevel_roi_align(features: Sequence[torch.Tensor], strides: Sequence[int], rois: torch.Tensor,
                         output_size: int | tuple[int, int], sampling_ratio: int = 2, aligned: bool = True,
                         canonical_size: float = 224.0, canonical_level: int = 4) -> torch.Tensor:
    """RoIAlign over an FPN: each RoI (K, 5) is pooled from the level :func:`assign_fpn_levels` picks.

    ``features[l]`` has stride ``strides[l]``; strides must be consecutive powers of two (4, 8, 16, ...).
    One :func:`roi_align` call per level that has RoIs. Returns (K, C, out_h, out_w) in ``rois`` order.
    """
    if len(features) != len(strides) or not features:
        raise ValueError(f"multilevel_roi_align needs one stride per feature map, got {len(features)} maps, {len(strides)} strides")
    levels = [int(round(math.log2(st))) for st in strides]
    if any(2 ** lv != st for lv, st in zip(levels, strides)) or levels != list(range(levels[0], levels[0] + len(levels))):
        raise ValueError(f"FPN strides must be consecutive powers of two, got {list(strides)}")
    oh, ow = _pair(output_size)
    out = features[0].new_zeros((rois.shape[0], features[0].shape[1], oh, ow))
    if rois.shape[0] == 0:
        return out
    assigned = assign_fpn_levels(rois[:, 1:], levels[0], levels[-1], canonical_size, canonical_level)
    for i, (feat, stride) in enumerate(zip(features, strides)):
        idx = torch.nonzero(assigned == i).squeeze(1)
        if idx.numel():
            out[idx] = roi_align(feat, rois[idx], (oh, ow), 1.0 / stride, sampling_ratio, aligned)
    return out
