"""YOLACT-lite: prototype masks + per-instance coefficients, cropped by the box (Bolya et al., YOLACT, 2019), made small.

Two parallel tasks share the backbone + FPN of SOLOv2-lite: a protonet turns P3 into k image-sized
prototype masks at stride 4 (ReLU, no per-instance work), and a one-stage anchor head on P3..P5
predicts, per anchor, class scores, box deltas and k tanh coefficients. An instance's mask is
sigmoid(prototypes . coefficients) cropped to its box, so mask assembly is one matrix product.
Duplicates are removed with Fast NMS (the paper's one-shot, upper-triangular IoU-matrix NMS).

Where it differs from the paper (all for small CPU batches and training from scratch, no
pretrained ResNet): GroupNorm instead of BatchNorm; P3..P5 only (inputs are 256 px, not 550);
anchors scaled by the level stride instead of fixed pixel sizes; classification by sigmoid focal
loss over all non-ignored anchors instead of softmax cross-entropy with 3:1 OHEM (the official
code has a focal-loss option too, and it reuses the focal loss SOLOv2 already trains with); no
semantic-segmentation auxiliary head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import sigmoid_focal_loss
from ..layers.boxes import box_iou, clip_boxes, decode_boxes, encode_boxes, generate_anchors
from .backbone import Backbone, conv_gn
from .base import InstanceSegModel, ModelConfigBase, TargetFn, crop_and_resize_logits, empty_prediction
from .fpn import FPN
from .solov2 import normalise_pixels

IGNORE = -2      # anchor_gt value: IoU between the negative and positive thresholds (no class loss)
BACKGROUND = -1  # anchor_gt value: negative anchor


@dataclass
class YolactConfig(ModelConfigBase):
    """Everything needed to rebuild the network; stored as JSON beside every checkpoint."""

    arch: ClassVar[str] = "yolact"
    head_channels: int = 64
    head_convs: int = 2
    proto_channels: int = 64
    num_prototypes: int = 16
    level_strides: tuple[int, ...] = (8, 16, 32)  # P3..P5
    anchor_scales: tuple[float, ...] = (2.0, 4.0)  # anchor size = scale x level stride (sqrt of area)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # h / w
    pos_iou: float = 0.5  # anchor IoU >= this: positive (plus each object's best anchor)
    neg_iou: float = 0.4  # below: negative; in between: ignored
    box_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)  # YOLACT/SSD variances 0.1, 0.2
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    box_weight: float = 1.5  # YOLACT bbox_alpha
    mask_weight: float = 6.125  # YOLACT mask_alpha (base config)
    masks_to_train: int = 100  # positive anchors per image whose masks are assembled for the loss
    # inference (YOLACT test settings)
    score_thr: float = 0.05
    nms_pre: int = 200  # candidates per class into Fast NMS (top_k)
    nms_iou: float = 0.5
    update_thr: float = 0.05  # final score threshold
    max_per_img: int = 100
    mask_thr: float = 0.5


def level_sizes(image_hw: tuple[int, int], strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """Feature map sizes of the levels for an input whose sides are multiples of 32 (what the backbone gives)."""
    return [(math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s)) for s in strides]


def yolact_anchors(cfg: YolactConfig, image_hw: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """All anchors (A_total, 4) in (level, y, x, anchor) order: the order of the head outputs."""
    sizes = [[s * stride for s in cfg.anchor_scales] for stride in cfg.level_strides]
    per_level = generate_anchors(level_sizes(image_hw, cfg.level_strides), cfg.level_strides, sizes,
                                 cfg.aspect_ratios, device=device)
    return torch.cat(per_level)


def match_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, pos_iou: float, neg_iou: float) -> torch.Tensor:
    """(A,) index of the object each anchor learns, or BACKGROUND / IGNORE (YOLACT's ``match``).

    IoU >= pos_iou: positive; < neg_iou: background; between: ignored. Every object also gets its
    best anchor, whatever the IoU, so small or oddly shaped objects are never left without one.
    """
    a = anchors.shape[0]
    if gt_boxes.shape[0] == 0:
        return torch.full((a,), BACKGROUND, dtype=torch.long)
    iou = box_iou(anchors, gt_boxes)  # (A, N)
    best_iou, best_gt = iou.max(1)
    out = torch.where(best_iou >= pos_iou, best_gt, torch.full_like(best_gt, IGNORE))
    out[best_iou < neg_iou] = BACKGROUND
    best_anchor = iou.argmax(0)  # (N,); later objects win a shared best anchor, as in YOLACT
    out[best_anchor] = torch.arange(gt_boxes.shape[0])
    return out


@dataclass(frozen=True)
class YolactTargets:
    """Per-sample anchor assignment for the data set (picklable, so data-loader workers run it)."""

    cfg: YolactConfig

    def __call__(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        hw = sample["masks"].shape[1:]
        anchors = yolact_anchors(self.cfg, (int(hw[0]), int(hw[1])))
        gt = match_anchors(anchors, torch.from_numpy(sample["boxes"]), self.cfg.pos_iou, self.cfg.neg_iou)
        return {"anchor_gt": gt.numpy()}


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, coeffs: torch.Tensor, iou_thr: float, score_thr: float,
             top_k: int, max_det: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """YOLACT's Fast NMS, per class: (boxes, scores, labels, coeffs) of the kept detections, best first.

    boxes (N, 4), scores (N, C), coeffs (N, k). Each class takes its ``top_k`` best candidates, builds
    their IoU matrix, keeps the upper triangle (IoU with higher-scored ones only) and drops a
    candidate whose largest IoU with any higher-scored candidate exceeds ``iou_thr`` -- even when that
    one was itself dropped (what makes it one matrix operation instead of a loop; the paper shows
    the AP cost is small). Kept ones also need score > ``score_thr``; the best ``max_det`` over all
    classes are returned.
    """
    scores_t = scores.t()  # (C, N)
    k = min(top_k, scores_t.shape[1])
    cls_scores, idx = scores_t.sort(1, descending=True)
    cls_scores, idx = cls_scores[:, :k], idx[:, :k]  # (C, k)
    cls_boxes = boxes[idx]  # (C, k, 4)
    iou = torch.stack([box_iou(b, b) for b in cls_boxes]) if k else boxes.new_zeros((scores_t.shape[0], 0, 0))
    iou = iou.triu(diagonal=1)
    iou_max = iou.max(1).values if k else iou.new_zeros((scores_t.shape[0], 0))
    keep = (iou_max <= iou_thr) & (cls_scores > score_thr)
    labels = torch.arange(scores_t.shape[0], device=scores.device)[:, None].expand_as(keep)[keep]
    kept_scores, kept_idx = cls_scores[keep], idx[keep]
    kept_scores, order = kept_scores.sort(descending=True)
    order = order[:max_det]
    kept_idx = kept_idx[order]
    return boxes[kept_idx], kept_scores[:max_det], labels[order], coeffs[kept_idx]


def box_crop(boxes: torch.Tensor, hw: tuple[int, int], scale: float = 1.0) -> torch.Tensor:
    """(K, H, W) bool: pixel centres inside each box (boxes in input pixels, ``scale`` = map pixels per input pixel)."""
    h, w = hw
    ys = (torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5) / scale
    xs = (torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5) / scale
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])  # (K, W)
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])  # (K, H)
    return inside_y[:, :, None] & inside_x[:, None, :]


class ProtoNet(nn.Module):
    """P3 -> k prototype masks at stride 4: 3x3 convs, x2 upsampling, 3x3 conv, 1x1 to k, ReLU (paper Fig. 3)."""

    def __init__(self, cin: int, channels: int, k: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(conv_gn(cin, channels), conv_gn(channels, channels))
        self.post = conv_gn(channels, channels)
        self.out = nn.Conv2d(channels, k, 1)

    def forward(self, p3: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.pre(p3), scale_factor=2, mode="bilinear", align_corners=False)
        return F.relu(self.out(self.post(x)))


class PredictionHead(nn.Module):
    """Shared over levels: convs, then per anchor class logits, box deltas and k tanh mask coefficients."""

    def __init__(self, cin: int, channels: int, convs: int, num_anchors: int, num_classes: int, k: int) -> None:
        super().__init__()
        self.tower = nn.Sequential(*[conv_gn(cin if i == 0 else channels, channels) for i in range(convs)])
        self.cls = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.coef = nn.Conv2d(channels, num_anchors * k, 3, padding=1)
        for conv in (self.cls, self.box, self.coef):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls.bias, -math.log((1 - 0.01) / 0.01))  # focal-loss prior 0.01
        self.num_classes, self.k = num_classes, k

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.tower(feat)
        b = x.shape[0]

        def flat(y: torch.Tensor, n: int) -> torch.Tensor:  # (B, A*n, H, W) -> (B, H*W*A, n): (y, x, anchor) order
            return y.permute(0, 2, 3, 1).reshape(b, -1, n)

        return flat(self.cls(x), self.num_classes), flat(self.box(x), 4), torch.tanh(flat(self.coef(x), self.k))


class Yolact(InstanceSegModel):
    summary = "YOLACT-lite: prototype masks x per-anchor coefficients, cropped by the box, Fast NMS"

    def __init__(self, cfg: YolactConfig) -> None:
        super().__init__(cfg)
        if len(cfg.level_strides) != 3:
            raise ValueError("level_strides needs 3 entries (P3..P5)")
        if len(cfg.box_weights) != 4:
            raise ValueError("box_weights needs 4 entries")
        self.cfg: YolactConfig = cfg
        self.backbone = Backbone(cfg.backbone_widths, cfg.backbone_blocks)
        self.fpn = FPN(self.backbone.out_channels[1:], cfg.fpn_channels)
        self.protonet = ProtoNet(cfg.fpn_channels, cfg.proto_channels, cfg.num_prototypes)
        num_anchors = len(cfg.anchor_scales) * len(cfg.aspect_ratios)
        self.head = PredictionHead(cfg.fpn_channels, cfg.head_channels, cfg.head_convs, num_anchors, cfg.num_classes,
                                   cfg.num_prototypes)

    @classmethod
    def make_targets(cls, cfg: YolactConfig) -> TargetFn:
        """Anchor assignment (``anchor_gt``: object index, BACKGROUND or IGNORE per anchor)."""
        return YolactTargets(cfg)

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
        x = normalise_pixels(images)
        p = self.fpn(self.backbone(x)[1:])  # P2..P5
        protos = self.protonet(p[1])  # (B, k, H/4, W/4)
        outs = [self.head(f) for f in p[1:]]
        out = {"cls": torch.cat([o[0] for o in outs], 1), "box": torch.cat([o[1] for o in outs], 1),
               "coef": torch.cat([o[2] for o in outs], 1), "protos": protos,
               "anchors": yolact_anchors(self.cfg, (images.shape[2], images.shape[3]), images.device),
               "image_hw": (images.shape[2], images.shape[3])}
        return out if targets is None else self.loss(out, targets)

    # ------------------------------------------------------------------ training
    def loss(self, out: dict[str, Any], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """targets[b]: labels (N,), masks (N, H, W) uint8, boxes (N, 4), anchor_gt (A,)."""
        cfg = self.cfg
        anchors, protos = out["anchors"], out["protos"]
        ph, pw = protos.shape[-2:]
        scale = pw / out["image_hw"][1]
        cls_terms, box_terms, mask_terms = [], [], []
        num_pos = 0
        for b, t in enumerate(targets):
            gt = t["anchor_gt"]
            if gt.shape[0] != anchors.shape[0]:
                raise ValueError(f"anchor targets for {gt.shape[0]} anchors, the network has {anchors.shape[0]}")
            pos = gt >= 0
            valid = gt != IGNORE
            onehot = torch.zeros_like(out["cls"][b])
            onehot[pos, t["labels"][gt[pos]]] = 1.0
            cls_terms.append(sigmoid_focal_loss(out["cls"][b][valid], onehot[valid], gamma=cfg.focal_gamma,
                                                alpha=cfg.focal_alpha))
            n = int(pos.sum())
            num_pos += n
            if n == 0:
                continue
            idx = torch.nonzero(pos, as_tuple=True)[0]
            reg = encode_boxes(t["boxes"][gt[idx]].float(), anchors[idx], cfg.box_weights)
            box_terms.append(F.smooth_l1_loss(out["box"][b, idx], reg, reduction="sum"))
            if n > cfg.masks_to_train:  # the paper caps assembled masks per image for memory
                idx = idx[torch.randperm(n, device=idx.device)[: cfg.masks_to_train]]
            inst = gt[idx]
            logits = torch.einsum("nk,khw->nhw", out["coef"][b, idx], protos[b])
            masks = t["masks"].float()
            target = F.adaptive_avg_pool2d(masks[None], (ph, pw))[0][inst] if masks.shape[-2:] != (ph, pw) else masks[inst]
            boxes = t["boxes"][inst].float()
            crop = box_crop(boxes, (ph, pw), scale).float()
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            area = (crop.flatten(1).sum(1)).clamp(min=1.0)  # the GT box area at prototype resolution
            mask_terms.append((bce * crop).flatten(1).sum(1) / area)
        denom = max(1, num_pos)
        zero = out["protos"].sum() * 0
        return {"cls": torch.stack(cls_terms).sum() / denom,
                "box": cfg.box_weight * torch.stack(box_terms).sum() / denom if box_terms else zero,
                "mask": cfg.mask_weight * torch.cat(mask_terms).mean() if mask_terms else zero}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def postprocess(self, out: dict[str, Any], b: int, valid_hw: tuple[int, int], out_hw: tuple[int, int],
                    refine: bool | None = None) -> dict[str, torch.Tensor]:
        """Masks (K, out_h, out_w) bool, labels (K,), scores (K,) for image ``b``; ``refine`` is ignored (no point head)."""
        cfg = self.cfg
        scores = torch.sigmoid(out["cls"][b])  # (A, C)
        cand = scores.max(1).values > cfg.score_thr
        if not cand.any():
            return empty_prediction(out_hw)
        image_hw = out["image_hw"]
        boxes = clip_boxes(decode_boxes(out["box"][b, cand], out["anchors"][cand], cfg.box_weights), image_hw)
        boxes, kept, labels, coeffs = fast_nms(boxes, scores[cand], out["coef"][b, cand], cfg.nms_iou, cfg.score_thr,
                                               cfg.nms_pre, cfg.max_per_img)
        keep = kept >= cfg.update_thr
        boxes, kept, labels, coeffs = boxes[keep], kept[keep], labels[keep], coeffs[keep]
        if len(kept) == 0:
            return empty_prediction(out_hw)
        protos = out["protos"][b]
        logits = torch.einsum("nk,khw->nhw", coeffs, protos)
        full = F.interpolate(logits[:, None], size=tuple(image_hw), mode="bilinear", align_corners=False)[:, 0]
        mask_logit = math.log(cfg.mask_thr / (1 - cfg.mask_thr))
        full = (full - mask_logit).masked_fill(~box_crop(boxes, tuple(image_hw)), -20.0)  # crop to the box, in logits
        masks = crop_and_resize_logits(full, valid_hw, out_hw) > 0
        nonempty = masks.flatten(1).any(1)
        return {"masks": masks[nonempty], "labels": labels[nonempty], "scores": kept[nonempty]}
