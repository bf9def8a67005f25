"""Mask R-CNN (He et al., 2017), made small for CPUs, on the zoo's shared backbone + FPN.

Two stages: a region proposal network (RPN) scores and refines anchors on P2..P5; the best
proposals are pooled with RoIAlign (``ml/layers``, pure torch: torchvision is not available) into a box
head (class + box refinement) and, for the final detections, a mask head that predicts a 28x28 mask
per box, pasted back into the image. Settings follow detectron2's ``mask_rcnn_R_50_FPN`` defaults,
scaled down where noted (sampling counts, widths, the FPN level rule) for 256-pixel inputs.

Box regression of the second stage is class-agnostic (4 deltas per RoI, as Cascade R-CNN and
detectron2's ``CLS_AGNOSTIC_BBOX_REG``): with few categories and few training images every positive
RoI trains the one regressor instead of 1/C of them. The mask head is class-specific (C sigmoid
channels; the loss reads only the GT class's channel), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.boxes import (batched_nms, box_iou, clip_boxes, decode_boxes, encode_boxes, generate_anchors,
                         nonempty_boxes)
from ..layers.masks import crop_masks_to_rois, paste_masks_in_image
from ..layers.roi_align import multilevel_roi_align
from .backbone import Backbone, conv_gn
from .base import InstanceSegModel, ModelConfigBase, empty_prediction
from .fpn import FPN
from .solov2 import normalise_pixels

FPN_STRIDES = (4, 8, 16, 32)  # P2..P5


@dataclass
class MaskRCNNConfig(ModelConfigBase):
    """Every setting of the network, its training targets and its inference (stored with checkpoints)."""

    arch: ClassVar[str] = "maskrcnn"
    num_classes: int
    # RPN: one anchor size per level P2..P5 (detectron2's 32..512 for 800 px, scaled to ~256 px inputs),
    # 3 aspect ratios (h / w) -> 3 anchors per location
    anchor_sizes: tuple[float, ...] = (16.0, 32.0, 64.0, 128.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_topk_train: int = 500  # per level (detectron2: 2000 / 1000 for 800-px images)
    rpn_post_nms_topk_train: int = 300  # per image
    rpn_pre_nms_topk_test: int = 500
    rpn_post_nms_topk_test: int = 300
    rpn_nms: float = 0.7
    rpn_box_beta: float = 1.0 / 9  # smooth-L1 beta (maskrcnn-benchmark)
    # RoI heads
    roi_batch_per_image: int = 128
    roi_positive_fraction: float = 0.25
    roi_fg_iou: float = 0.5
    roi_canonical_size: float = 112.0  # FPN level rule: a 112-px box -> P4 (the paper's 224 sends ~all to P2 here)
    roi_sampling_ratio: int = 2
    box_pool: int = 7
    box_fc: int = 256
    box_reg_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
    box_beta: float = 1.0
    mask_pool: int = 14
    mask_channels: int = 64
    mask_convs: int = 4
    mask_weight: float = 1.0
    # inference (detectron2 test cfg): candidates > score_thr, per-class NMS, keep >= update_thr, top max_per_img
    score_thr: float = 0.05
    update_thr: float = 0.05
    nms_pre: int = 1000
    nms_thr: float = 0.5
    max_per_img: int = 100
    mask_thr: float = 0.5


def _sample(labels: torch.Tensor, num: int, positive_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of at most ``num`` labelled entries (1 = positive, 0 = negative, -1 ignored), positives
    capped at ``num * positive_fraction``, negatives filling the rest; random (global torch RNG, which
    the trainer checkpoints, so a resumed run draws the same samples)."""
    pos = torch.nonzero(labels == 1).squeeze(1)
    neg = torch.nonzero(labels == 0).squeeze(1)
    n_pos = min(pos.numel(), int(num * positive_fraction))
    n_neg = min(neg.numel(), num - n_pos)
    pos = pos[torch.randperm(pos.numel(), device=labels.device)[:n_pos]]
    neg = neg[torch.randperm(neg.numel(), device=labels.device)[:n_neg]]
    return pos, neg


def match_anchors(gt: torch.Tensor, anchors: torch.Tensor, fg_iou: float, bg_iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RPN labels per anchor (1 positive, 0 negative, -1 ignored) and the index of its best GT box.

    IoU >= ``fg_iou`` positive, < ``bg_iou`` negative, in between ignored; plus detectron2's
    low-quality matches: the anchors of highest IoU with each GT box are positive whatever the IoU,
    so a small or thin object (no anchor at 0.7) still trains the RPN.
    """
    labels = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
    if len(gt) == 0:
        return labels, labels.clone()
    iou = box_iou(gt, anchors)  # (G, A)
    best, matched = iou.max(0)
    labels = torch.where(best >= fg_iou, 1, torch.where(best < bg_iou, 0, -1))
    per_gt = iou.max(1, keepdim=True).values
    labels[((iou == per_gt) & (per_gt > 0)).any(0)] = 1
    return labels, matched


class RPNHead(nn.Module):
    """Shared 3x3 conv, then per anchor one objectness logit and 4 box deltas, on every level."""

    def __init__(self, channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: objectness (B, H*W*A) and deltas (B, H*W*A, 4), in ``grid_anchors`` order (y, x, a)."""
        logits, deltas = [], []
        for f in feats:
            t = F.relu(self.conv(f))
            b, _, h, w = t.shape
            logits.append(self.objectness(t).permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(self.deltas(t).view(b, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
        return logits, deltas


class BoxHead(nn.Module):
    """Two FC layers on the 7x7 RoI features -> (C + 1) class logits (background last) and 4 deltas."""

    def __init__(self, channels: int, pool: int, fc: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * pool * pool, fc), nn.ReLU(inplace=True),
                                nn.Linear(fc, fc), nn.ReLU(inplace=True))
        self.cls = nn.Linear(fc, num_classes + 1)
        self.reg = nn.Linear(fc, 4)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.reg.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.reg.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(x)
        return self.cls(h), self.reg(h)


class MaskHead(nn.Module):
    """``convs`` 3x3 conv-GN-ReLU on the 14x14 RoI features, a 2x2 stride-2 deconv, 1x1 -> C mask logits (28x28)."""

    def __init__(self, channels: int, width: int, convs: int, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[conv_gn(channels if i == 0 else width, width) for i in range(convs)])
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.predictor = nn.Conv2d(width, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(F.relu(self.up(self.convs(x))))


class MaskRCNN(InstanceSegModel):
    summary = "Mask R-CNN (small): RPN + RoIAlign box and 28x28 mask heads, per-class NMS; two-stage baseline"

    def __init__(self, cfg: MaskRCNNConfig) -> None:
        super().__init__(cfg)
        if len(cfg.anchor_sizes) != len(FPN_STRIDES):
            raise ValueError(f"anchor_sizes needs one size per level P2..P5 ({len(FPN_STRIDES)}), got {len(cfg.anchor_sizes)}")
        if len(cfg.box_reg_weights) != 4:
            raise ValueError("box_reg_weights needs 4 values (wx, wy, ww, wh)")
        self.cfg: MaskRCNNConfig = cfg
        self.backbone = Backbone(cfg.backbone_widths, cfg.backbone_blocks)
        self.fpn = FPN(self.backbone.out_channels[1:], cfg.fpn_channels)
        self.rpn = RPNHead(cfg.fpn_channels, len(cfg.anchor_ratios))
        self.box_head = BoxHead(cfg.fpn_channels, cfg.box_pool, cfg.box_fc, cfg.num_classes)
        self.mask_head = MaskHead(cfg.fpn_channels, cfg.mask_channels, cfg.mask_convs, cfg.num_classes)

    # ------------------------------------------------------------------ shared pieces
    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
        """Loss dict with ``targets`` (boxes, labels, masks per image); detections per image without.

        Raw outputs: ``boxes`` / ``scores`` / ``labels`` / ``mask_probs`` (K, 28, 28), one list entry
        per image, boxes in input pixels; ``postprocess`` pastes the masks.
        """
        feats = self.fpn(self.backbone(normalise_pixels(images))[1:])  # P2..P5
        image_hw = (images.shape[-2], images.shape[-1])
        obj, deltas = self.rpn(feats)
        anchors = generate_anchors([f.shape[-2:] for f in feats], FPN_STRIDES, [[s] for s in self.cfg.anchor_sizes],
                                   self.cfg.anchor_ratios, dtype=feats[0].dtype, device=feats[0].device)
        training = targets is not None
        proposals = self._proposals(anchors, obj, deltas, image_hw, training)
        if targets is None:
            return self._detect(feats, proposals, image_hw)
        losses = self._rpn_loss(torch.cat(anchors), torch.cat(obj, 1), torch.cat(deltas, 1), targets)
        losses.update(self._roi_loss(feats, proposals, targets))
        return losses

    def _pool(self, feats: list[torch.Tensor], boxes: list[torch.Tensor], size: int) -> torch.Tensor:
        """Multi-level RoIAlign of per-image box lists -> (sum K, C, size, size)."""
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)])
        return multilevel_roi_align(feats, FPN_STRIDES, rois, size, self.cfg.roi_sampling_ratio, aligned=True,
                                    canonical_size=self.cfg.roi_canonical_size, canonical_level=4)

    @torch.no_grad()
    def _proposals(self, anchors: list[torch.Tensor], obj: list[torch.Tensor], deltas: list[torch.Tensor],
                   image_hw: tuple[int, int], training: bool) -> list[torch.Tensor]:
        """Top-k anchors per level by objectness, decoded, clipped, NMS per level, top-k per image (detached)."""
        cfg = self.cfg
        pre = cfg.rpn_pre_nms_topk_train if training else cfg.rpn_pre_nms_topk_test
        post = cfg.rpn_post_nms_topk_train if training else cfg.rpn_post_nms_topk_test
        batch = obj[0].shape[0]
        boxes_l, scores_l, level_l = [], [], []
        for lvl, (a, o, d) in enumerate(zip(anchors, obj, deltas)):
            scores, idx = o.topk(min(pre, o.shape[1]), dim=1)  # (B, k)
            picked = torch.gather(d, 1, idx[..., None].expand(-1, -1, 4))
            boxes_l.append(decode_boxes(picked, a[idx]))
            scores_l.append(scores)
            level_l.append(torch.full_like(idx, lvl))
        boxes, scores, levels = torch.cat(boxes_l, 1), torch.cat(scores_l, 1), torch.cat(level_l, 1)
        out = []
        for b in range(batch):
            bx = clip_boxes(boxes[b], image_hw)
            ok = nonempty_boxes(bx) & torch.isfinite(bx).all(1) & torch.isfinite(scores[b])
            bx, sc, lv = bx[ok], scores[b][ok], levels[b][ok]
            out.append(bx[batched_nms(bx, sc, lv, cfg.rpn_nms, max_keep=post)])
        return out

    # ------------------------------------------------------------------ training
    def _rpn_loss(self, anchors: torch.Tensor, obj: torch.Tensor, deltas: torch.Tensor,
                  targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Anchors >= 0.7 IoU with a GT box (and each GT's best anchors) positive, < 0.3 negative;
        256 sampled per image; BCE + smooth L1, both over the number sampled (detectron2)."""
        cfg = self.cfg
        cls_terms, box_terms = [], []
        for b, t in enumerate(targets):
            gt = t["boxes"].to(anchors)
            labels, matched = match_anchors(gt, anchors, cfg.rpn_fg_iou, cfg.rpn_bg_iou)
            pos, neg = _sample(labels, cfg.rpn_batch_per_image, cfg.rpn_positive_fraction)
            idx = torch.cat([pos, neg])
            cls_terms.append(F.binary_cross_entropy_with_logits(obj[b, idx], (labels[idx] == 1).to(obj.dtype),
                                                                reduction="sum"))
            if pos.numel():
                reg = encode_boxes(gt[matched[pos]], anchors[pos])
                box_terms.append(F.smooth_l1_loss(deltas[b, pos], reg, beta=cfg.rpn_box_beta, reduction="sum"))
        norm = float(cfg.rpn_batch_per_image * len(targets))
        zero = deltas.sum() * 0
        return {"rpn_cls": torch.stack(cls_terms).sum() / norm,
                "rpn_box": (torch.stack(box_terms).sum() if box_terms else zero) / norm}

    def _roi_loss(self, feats: list[torch.Tensor], proposals: list[torch.Tensor],
                  targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Proposals + GT boxes matched at IoU 0.5, 128 RoIs per image (25 % foreground): softmax CE,
        smooth L1 on foreground deltas (over all sampled), mask BCE on foreground RoIs' GT-class channel."""
        cfg = self.cfg
        bg = cfg.num_classes
        rois, classes, reg_targets, fg_rois, fg_classes, fg_gt = [], [], [], [], [], []
        gt_offset = 0
        for b, t in enumerate(targets):
            gt = t["boxes"].to(feats[0])
            gt_labels = t["labels"].to(feats[0].device)
            props = torch.cat([proposals[b], gt])
            if len(gt):
                best, matched = box_iou(gt, props).max(0)
                cls = torch.where(best >= cfg.roi_fg_iou, gt_labels[matched], bg)
            else:
                matched = torch.zeros(len(props), dtype=torch.long, device=props.device)
                cls = torch.full((len(props),), bg, dtype=torch.long, device=props.device)
            pos, neg = _sample((cls != bg).long(), cfg.roi_batch_per_image, cfg.roi_positive_fraction)
            idx = torch.cat([pos, neg])
            rois.append(props[idx])
            classes.append(cls[idx])
            reg_targets.append(encode_boxes(gt[matched[pos]], props[pos], cfg.box_reg_weights) if pos.numel()
                               else props.new_zeros((0, 4)))
            fg_rois.append(props[pos])
            fg_classes.append(cls[pos])
            fg_gt.append(matched[pos] + gt_offset)
            gt_offset += len(gt)
        logits, deltas = self.box_head(self._pool(feats, rois, cfg.box_pool))
        classes_t = torch.cat(classes)
        fg = classes_t != bg
        losses = {"cls": F.cross_entropy(logits, classes_t),
                  "box": F.smooth_l1_loss(deltas[fg], torch.cat(reg_targets), beta=cfg.box_beta,
                                          reduction="sum") / max(1, len(classes_t))}
        losses.update(self._mask_loss(feats, fg_rois, torch.cat(fg_classes), torch.cat(fg_gt), targets))
        return losses

    def _mask_loss(self, feats: list[torch.Tensor], fg_rois: list[torch.Tensor], fg_cls: torch.Tensor,
                   fg_gt: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Mask BCE of the foreground RoIs (per image boxes ``fg_rois``, GT class ``fg_cls``, index ``fg_gt``
        into the batch's concatenated GT masks) on the GT class's channel; the hook a mask-head variant replaces."""
        cfg = self.cfg
        mask_logits = self.mask_head(self._pool(feats, fg_rois, cfg.mask_pool))  # (K_fg, C, 28, 28)
        if mask_logits.shape[0] == 0:
            return {"mask": mask_logits.sum() * 0}
        mask_logits = mask_logits[torch.arange(len(fg_cls), device=fg_cls.device), fg_cls]
        gt_masks = torch.cat([t["masks"].to(feats[0].device) for t in targets])
        mask_targets = crop_masks_to_rois(gt_masks, torch.cat(fg_rois), fg_gt, mask_logits.shape[-1],
                                          cfg.roi_sampling_ratio)
        return {"mask": cfg.mask_weight * F.binary_cross_entropy_with_logits(mask_logits, mask_targets)}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _detect(self, feats: list[torch.Tensor], proposals: list[torch.Tensor],
                image_hw: tuple[int, int]) -> dict[str, list[torch.Tensor]]:
        """Box head on the proposals -> per-class NMS -> mask head on the kept boxes."""
        cfg = self.cfg
        out: dict[str, list[torch.Tensor]] = {"boxes": [], "scores": [], "labels": [], "mask_probs": []}
        counts = [len(p) for p in proposals]
        if sum(counts):
            logits, deltas = self.box_head(self._pool(feats, proposals, cfg.box_pool))
            probs = F.softmax(logits, -1)[:, :cfg.num_classes]
            boxes = clip_boxes(decode_boxes(deltas, torch.cat(proposals), cfg.box_reg_weights), image_hw)
            per_image = zip(probs.split(counts), boxes.split(counts))
        else:
            per_image = zip([feats[0].new_zeros((0, cfg.num_classes))] * len(proposals),
                            [feats[0].new_zeros((0, 4))] * len(proposals))
        for probs_b, boxes_b in per_image:
            roi, label = torch.nonzero(probs_b > cfg.score_thr, as_tuple=True)
            scores, bx = probs_b[roi, label], boxes_b[roi]
            ok = nonempty_boxes(bx)
            scores, bx, label = scores[ok], bx[ok], label[ok]
            if len(scores) > cfg.nms_pre:
                scores, top = scores.topk(cfg.nms_pre)
                bx, label = bx[top], label[top]
            keep = batched_nms(bx, scores, label, cfg.nms_thr, max_keep=cfg.max_per_img)
            keep = keep[scores[keep] >= cfg.update_thr]
            out["boxes"].append(bx[keep])
            out["scores"].append(scores[keep])
            out["labels"].append(label[keep])
        n_det = [len(b) for b in out["boxes"]]
        if sum(n_det):
            out["mask_probs"] = list(self._mask_probs(feats, out["boxes"], torch.cat(out["labels"])).split(n_det))
        else:
            size = 2 * cfg.mask_pool
            out["mask_probs"] = [feats[0].new_zeros((0, size, size)) for _ in n_det]
        return out

    def _mask_probs(self, feats: list[torch.Tensor], boxes: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """(sum K, 28, 28) mask probabilities of the detections (per image ``boxes``, class ``labels``)."""
        mask_logits = self.mask_head(self._pool(feats, boxes, self.cfg.mask_pool))
        return torch.sigmoid(mask_logits[torch.arange(len(labels), device=labels.device), labels])

    @torch.no_grad()
    def postprocess(self, out: dict[str, Any], b: int, valid_hw: tuple[int, int], out_hw: tuple[int, int],
                    refine: bool | None = None) -> dict[str, torch.Tensor]:
        """Paste image ``b``'s 28x28 mask probabilities into the original image (boxes rescaled from the
        letterboxed input, so no second resize), threshold at ``mask_thr``; ``refine`` is ignored."""
        boxes = out["boxes"][b]
        if len(boxes) == 0:
            return empty_prediction(out_hw, boxes.device)
        (vh, vw), (oh, ow) = valid_hw, out_hw
        scale = boxes.new_tensor([ow / vw, oh / vh, ow / vw, oh / vh])
        masks = paste_masks_in_image(out["mask_probs"][b], boxes * scale, out_hw, threshold=self.cfg.mask_thr)
        nonempty = masks.flatten(1).any(1)
        return {"masks": masks[nonempty], "labels": out["labels"][b][nonempty], "scores": out["scores"][b][nonempty]}
