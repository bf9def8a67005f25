"""BCNet-style bilayer mask head (Ke et al., "Deep Occlusion-Aware Instance Segmentation with
Overlapping BiLayers", CVPR 2021) on the zoo's Mask R-CNN.

Everything up to the mask head is ``maskrcnn.MaskRCNN`` (subclassed: RPN, box head, RoIAlign,
sampling, NMS, mask pasting). The mask head is replaced by two stacked layers on the 14x14 RoI
features:

1. the **occluder layer** (conv, non-local attention = BCNet's "GCN", conv) predicts, inside the RoI,
   the mask and the contour of whatever hides part of the RoI's object;
2. its 14x14 features are **added to the RoI features**, and the **occludee layer** (same design)
   predicts the target object's visible mask (class-specific, as Mask R-CNN) and its contour.

Only the occludee mask is used at inference (pasted exactly as Mask R-CNN does). The occluder
supervision comes from the generator's amodal masks (``needs_amodal``): an instance j occludes
instance i when j's visible mask overlaps i's amodal mask (at those pixels j is in front of i,
since i would otherwise be visible there), see :func:`occluder_masks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..layers.masks import crop_masks_to_rois
from .backbone import conv_gn
from .base import TargetFn
from .maskrcnn import MaskRCNN, MaskRCNNConfig


@dataclass
class BCNetConfig(MaskRCNNConfig):
    """Mask R-CNN's settings plus the bilayer head's (stored with checkpoints)."""

    arch: ClassVar[str] = "bcnet"
    nonlocal_attention: bool = True  # BCNet's GCN (non-local block) in each layer; False: plain convs
    occluder_weight: float = 0.5  # occluder mask and contour losses (x boundary_weight for the contour)
    boundary_weight: float = 0.5  # contour losses relative to their masks
    occluder_min_overlap: int = 1  # pixels of j's visible mask inside i's amodal mask for j to occlude i


def occluder_masks(visible: np.ndarray, amodal: np.ndarray, min_overlap: int = 1) -> np.ndarray:
    """(N, H, W) occluder target per instance: the union of the visible masks of the OTHER instances
    whose visible mask overlaps this instance's amodal mask by >= ``min_overlap`` pixels.

    Whole visible masks, not just the overlap: the occluder layer predicts the occluder's shape and
    contour inside the RoI (the crop to the RoI happens in the model). Objects behind instance i
    never qualify, because where i's amodal mask is, i (or something in front of it) is what is seen.
    """
    n = len(visible)
    if n == 0:
        return np.zeros_like(visible, dtype=np.uint8)
    vis = visible.reshape(n, -1).astype(np.float32)
    overlap = (amodal.reshape(n, -1) > 0).astype(np.float32) @ (vis > 0).T  # (i, j) pixel counts
    np.fill_diagonal(overlap, 0)
    occludes = (overlap >= max(1, min_overlap)).astype(np.float32)
    return ((occludes @ (vis > 0)) > 0).reshape(visible.shape).astype(np.uint8)


@dataclass(frozen=True)
class OccluderTargets:
    """Picklable target function for the data set: adds ``occluder_masks`` (N, H, W) uint8."""

    min_overlap: int = 1

    def __call__(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        amodal = sample.get("amodal_masks", sample["masks"])
        return {"occluder_masks": occluder_masks(sample["masks"], amodal, self.min_overlap)}


def mask_contour(masks: torch.Tensor) -> torch.Tensor:
    """Contour targets of (K, S, S) 0/1 masks: 3x3 morphological gradient (dilation - erosion).

    Max-pooling ignores its padding, so a mask that runs into the RoI's edge has no contour there
    (the RoI edge is not an object boundary).
    """
    m = masks[:, None]
    return (F.max_pool2d(m, 3, 1, 1) + F.max_pool2d(-m, 3, 1, 1))[:, 0]


class NonLocal(nn.Module):
    """Non-local block (embedded Gaussian, Wang et al. 2018): BCNet's GCN over the RoI's 14x14 nodes,
    edges = softmax of feature similarity. The output conv starts at zero (an identity block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 2)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2)  # (B, I, HW)
        k = self.key(x).flatten(2)
        v = self.value(x).flatten(2)
        attn = torch.softmax(q.transpose(1, 2) @ k * q.shape[1] ** -0.5, dim=-1)  # (B, HW, HW)
        y = (v @ attn.transpose(1, 2)).reshape(b, v.shape[1], h, w)  # b may be 0: no RoIs in the batch
        return x + self.out(y)


class BilayerBranch(nn.Module):
    """One layer: conv-GN-ReLU, non-local, ``convs - 1`` conv-GN-ReLU (14x14 features, returned for
    the next layer), then a 2x2 stride-2 deconv and 1x1 convs to ``mask_out`` mask logits + 1 contour logit."""

    def __init__(self, cin: int, width: int, convs: int, mask_out: int, nonlocal_attention: bool) -> None:
        super().__init__()
        self.pre = conv_gn(cin, width)
        self.gcn: nn.Module = NonLocal(width) if nonlocal_attention else nn.Identity()
        self.post = nn.Sequential(*[conv_gn(width, width) for _ in range(max(0, convs - 1))])
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.mask = nn.Conv2d(width, mask_out, 1)
        self.contour = nn.Conv2d(width, 1, 1)
        for layer in (self.mask, self.contour):
            nn.init.normal_(layer.weight, std=0.001)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.post(self.gcn(self.pre(x)))
        up = F.relu(self.up(feat))
        return feat, self.mask(up), self.contour(up)


class BilayerMaskHead(nn.Module):
    """Occluder layer -> (its features + the RoI features) -> occludee layer; 28x28 logits of each.

    Returns ``(mask (K, C, 28, 28), contour (K, 28, 28), occluder_mask (K, 28, 28), occluder_contour
    (K, 28, 28))``. The occluder layer is class-agnostic (an occluder may be of any category).
    """

    def __init__(self, channels: int, width: int, convs: int, num_classes: int, nonlocal_attention: bool) -> None:
        super().__init__()
        per_layer = max(1, convs // 2)
        self.occluder = BilayerBranch(channels, width, per_layer, 1, nonlocal_attention)
        self.to_roi: nn.Module = nn.Identity() if width == channels else nn.Conv2d(width, channels, 1)
        self.occludee = BilayerBranch(channels, width, per_layer, num_classes, nonlocal_attention)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        occ_feat, occ_mask, occ_contour = self.occluder(x)
        _, mask, contour = self.occludee(x + self.to_roi(occ_feat))
        return mask, contour[:, 0], occ_mask[:, 0], occ_contour[:, 0]


class BCNet(MaskRCNN):
    summary = ("BCNet-style bilayer Mask R-CNN: an occluder layer (mask + contour, from amodal masks) "
               "feeds the occludee mask layer; for overlapping objects")
    needs_amodal = True

    def __init__(self, cfg: BCNetConfig) -> None:
        super().__init__(cfg)
        self.cfg: BCNetConfig = cfg
        self.mask_head = BilayerMaskHead(cfg.fpn_channels, cfg.mask_channels, cfg.mask_convs, cfg.num_classes,
                                         cfg.nonlocal_attention)

    @classmethod
    def make_targets(cls, cfg: Any) -> TargetFn:
        """``occluder_masks`` per instance from the visible and amodal masks (:func:`occluder_masks`)."""
        return OccluderTargets(int(cfg.occluder_min_overlap))

    def _mask_loss(self, feats: list[torch.Tensor], fg_rois: list[torch.Tensor], fg_cls: torch.Tensor,
                   fg_gt: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """BCE of the occludee mask (GT class channel) and contour, and of the occluder mask and contour,
        each against the GT crop to the RoI (``crop_masks_to_rois``, as Mask R-CNN's target)."""
        cfg = self.cfg
        mask, contour, occ_mask, occ_contour = self.mask_head(self._pool(feats, fg_rois, cfg.mask_pool))
        if mask.shape[0] == 0:
            zero = mask.sum() * 0 + contour.sum() * 0 + occ_mask.sum() * 0 + occ_contour.sum() * 0
            return {"mask": zero, "contour": zero, "occluder_mask": zero, "occluder_contour": zero}
        if any("occluder_masks" not in t for t in targets):
            raise ValueError("bcnet needs 'occluder_masks' targets: build the data set with BCNet.make_targets")
        dev = feats[0].device
        rois, size, ratio = torch.cat(fg_rois), mask.shape[-1], cfg.roi_sampling_ratio
        visible = crop_masks_to_rois(torch.cat([t["masks"].to(dev) for t in targets]), rois, fg_gt, size, ratio)
        occluder = crop_masks_to_rois(torch.cat([t["occluder_masks"].to(dev) for t in targets]), rois, fg_gt, size,
                                      ratio)
        mask = mask[torch.arange(len(fg_cls), device=fg_cls.device), fg_cls]
        bce = F.binary_cross_entropy_with_logits
        return {"mask": cfg.mask_weight * bce(mask, visible),
                "contour": cfg.mask_weight * cfg.boundary_weight * bce(contour, mask_contour(visible)),
                "occluder_mask": cfg.occluder_weight * bce(occ_mask, occluder),
                "occluder_contour": cfg.occluder_weight * cfg.boundary_weight * bce(occ_contour, mask_contour(occluder))}

    def _mask_probs(self, feats: list[torch.Tensor], boxes: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The occludee layer's mask of each detection's class (the occluder outputs are not used)."""
        mask = self.mask_head(self._pool(feats, boxes, self.cfg.mask_pool))[0]
        return torch.sigmoid(mask[torch.arange(len(labels), device=labels.device), labels])
