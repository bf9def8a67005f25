"""SOLOv2-lite: box-free instance segmentation by location (Wang et al., SOLOv2, 2020), made small.

Each cell of an SxS grid (one grid per pyramid level) predicts a category score and a dynamic 1x1
kernel; the kernel applied to one shared stride-4 mask-feature map gives the mask of the object
whose centre falls in that cell. Duplicates are removed with Matrix NMS. No anchors, boxes, RoIAlign
or box-NMS, which keeps the code small and the CPU cost low (there is no torchvision here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import dice_loss, point_bce_loss, sigmoid_focal_loss
from ..matrix_nms import matrix_nms
from ..layers.object_crops import shuffle_channels
from ..targets import SoloTargets
from .backbone import Backbone, conv_gn
from .base import InstanceSegModel, ModelConfigBase, TargetFn, empty_prediction, logits_to_masks
from .fpn import FPN
from .mask_classifiers import MaskPooledClassifier, RoIMaskClassifier
from .point_head import PointHead, mask_boxes, point_sample, uncertain_points_with_randomness

PIXEL_MEAN = 0.45
PIXEL_STD = 0.25


def normalise_pixels(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> the networks' input scale (every zoo model and the classifier's bank crops)."""
    return (x - PIXEL_MEAN) / PIXEL_STD


@dataclass
class Solov2Config(ModelConfigBase):
    """Everything needed to rebuild the network; stored as JSON beside every checkpoint."""

    arch: ClassVar[str] = "solov2"
    train_switches: ClassVar[tuple[str, ...]] = ("point_head",)  # train --point-head / --no-point-head
    head_channels: int = 64
    head_convs: int = 2
    mask_channels: int = 32
    # the mask features also read the backbone's stride-2 map (MaskFeatureBranch): finer detail for the
    # outlines, which scored higher in mask and Boundary AP; configs saved without it load with it off
    mask_fine: bool = True
    grids: tuple[int, ...] = (24, 16, 8)
    # sqrt(box area) ranges per grid, as fractions of the input size (overlapping, as in SOLO)
    scale_ranges: tuple[tuple[float, float], ...] = ((0.0, 0.25), (0.125, 0.5), (0.25, 100.0))
    level_strides: tuple[int, ...] = (8, 16, 32)
    sigma: float = 0.2
    dice_weight: float = 3.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    # off by default: on a CPU within a short time budget, the training steps the point head costs buy
    # more AP than its refinement does (train --point-head turns it on; it pays off on long runs or a GPU)
    point_head: bool = False
    point_hidden: int = 64
    point_layers: int = 3
    point_train_points: int = 196
    point_oversample: float = 3.0
    point_importance: float = 0.75
    point_max_instances: int = 24
    point_weight: float = 1.0
    point_box_sampling: bool = True  # draw training points around each instance, not over the whole image
    # second-look classifier: re-decides each candidate's class from its mask (mask_classifiers.py):
    # "roi" a CNN on a scale-normalised crop of image + mask + mask features, "pooled" an MLP on
    # features averaged under the mask. Configs saved before either existed load with it off, those
    # saved before "roi" existed load as "pooled".
    mask_classifier: bool = True
    mask_cls_kind: str = "roi"
    mask_cls_hidden: int = 128
    mask_cls_size: int = 24  # roi: crop side in pixels
    mask_cls_width: int = 16  # roi: channels of the first conv (x2, x4 after each stride 2)
    mask_cls_feat: int = 0  # roi: mask-feature channels cropped (a 1x1 projection); 0: image + mask only
    mask_cls_bank: int = 48  # roi without features: crops of objects from other training images per image
    mask_cls_weight: float = 1.0
    # predicted masks of positive cells per image it trains on (plus every GT mask and the bank), those
    # whose stride-4 mask overlaps their object by mask_cls_min_iou: what it classifies at inference
    # (trained on GT masks alone it reads outline detail that predicted masks lack; fewer or more
    # masks than 16 scored lower)
    mask_cls_max_cells: int = 16
    mask_cls_min_iou: float = 0.5
    # roi: crops per mask in training, the first plain, the others jittered (RoIMaskClassifier.crops). 1:
    # the predicted masks it trains on already show it real imperfect masks, and every extra view costs
    # training steps without raising AP
    mask_cls_views: int = 1
    mask_cls_jitter: float = 0.15  # roi: their centre shift and scale change, fractions of the half side
    mask_cls_topk: int = 4  # classes kept per candidate mask at inference
    mask_cls_stages: int = 3  # roi: stride-2 stages of the crop CNN (3: 24 -> 3 px, the whole object in view)
    mask_cls_permute: bool = True  # roi: bank crops' colour channels shuffled in training (layers.object_crops)
    mask_cls_flip_tta: bool = True  # roi: inference classifies each crop and its mirror image
    # weight of the grid branch's class scores in the class decision (product of experts with the
    # classifier, reclassify); 0: the classifier alone
    mask_cls_grid_weight: float = 1.0
    # a candidate mask's objectness (its score before the classifier names it): "noisy_or" the chance
    # that any class is there, 1 - prod(1 - p_c) over the cell's grid class scores; "max" the best one.
    # The grid branch's focal loss spreads an object over the classes it is unsure between, so the best
    # one under-rates objects and scores stop short of 0.5; noisy-OR scores a found object as found.
    # Configs saved before it load as "max" (their stored score thresholds were chosen under it).
    mask_cls_objectness: str = "noisy_or"
    subdivision_steps: int = 2
    subdivision_points: int = 784
    # inference (SOLOv2 test cfg)
    score_thr: float = 0.1
    nms_pre: int = 500
    mask_thr: float = 0.5
    update_thr: float = 0.03
    max_per_img: int = 100
    nms_kernel: str = "gaussian"
    nms_sigma: float = 2.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        # saved before the mask classifier: off; saved before the RoI one: the pooled one; every saved
        # config names point_head, but one without it is from when the head was the default; saved
        # before the third classifier stage, channel shuffling and flip TTA, or before the stride-2 input of
        # the mask features: without them (the weights fit, resumes and predictions stay the same)
        return super().from_dict({"mask_classifier": False, "mask_cls_kind": "pooled", "point_head": True,
                                  "mask_cls_stages": 2, "mask_cls_permute": False, "mask_cls_flip_tta": False,
                                  "mask_fine": False, "mask_cls_objectness": "max", **d})


def mask_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks a[i] and b[i] (K, h, w) -> (K,); 0 where both are empty."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return inter / union.clamp(min=1)


def coord_channels(x: torch.Tensor) -> torch.Tensor:
    """Two channels of normalised (x, y) in [-1, 1]: lets 1x1 kernels tell objects apart by position."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])[None].expand(b, -1, -1, -1)


class MaskFeatureBranch(nn.Module):
    """Fuses P2..P5 into one stride-4 map of ``out`` channels (the unified mask feature of SOLOv2).

    With ``fine_channels`` it also adds the backbone's stride-2 map through a stride-2 conv: the
    FPN's finest level is stride 4 and one residual block deep, and small objects (a 20 px object is
    5 x 5 mask cells) need the outline detail the stride-2 map still has.
    """

    def __init__(self, cin: int, out: int, n_levels: int, fine_channels: int = 0) -> None:
        super().__init__()
        self.levels = nn.ModuleList(conv_gn(cin + (2 if i == n_levels - 1 else 0), out) for i in range(n_levels))
        self.fine = conv_gn(fine_channels, out, stride=2) if fine_channels else None
        self.fuse = conv_gn(out, out, k=1)

    def forward(self, feats: list[torch.Tensor], fine: torch.Tensor | None = None) -> torch.Tensor:
        size = feats[0].shape[-2:]
        acc = None if self.fine is None else self.fine(fine)  # built with fine_channels: ``fine`` is required
        for i, (conv, f) in enumerate(zip(self.levels, feats)):
            if i == len(feats) - 1:
                f = torch.cat([f, coord_channels(f)], dim=1)
            y = conv(f)
            if i > 0:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            acc = y if acc is None else acc + y
        return self.fuse(acc)


class GridHead(nn.Module):
    """Shared category + kernel branches, applied to each level resized to its SxS grid."""

    def __init__(self, cin: int, channels: int, convs: int, num_classes: int, kernel_dim: int) -> None:
        super().__init__()
        self.cate = nn.Sequential(*[conv_gn(cin if i == 0 else channels, channels) for i in range(convs)])
        self.kernel = nn.Sequential(*[conv_gn(cin + 2 if i == 0 else channels, channels) for i in range(convs)])
        self.cate_out = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.kernel_out = nn.Conv2d(channels, kernel_dim, 3, padding=1)
        nn.init.normal_(self.cate_out.weight, std=0.01)
        nn.init.constant_(self.cate_out.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.normal_(self.kernel_out.weight, std=0.01)
        nn.init.zeros_(self.kernel_out.bias)

    def forward(self, feat: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
        kfeat = torch.cat([feat, coord_channels(feat)], dim=1)
        kfeat = F.interpolate(kfeat, size=(grid, grid), mode="bilinear", align_corners=False)
        cfeat = kfeat[:, :-2]
        return self.cate_out(self.cate(cfeat)), self.kernel_out(self.kernel(kfeat))


class SOLOv2Lite(InstanceSegModel):
    summary = ("SOLOv2-lite: grid cells predict dynamic mask kernels, Matrix NMS, PointRend-style point head, "
               "second-look mask classifier")

    def __init__(self, cfg: Solov2Config) -> None:
        super().__init__(cfg)
        if len(cfg.grids) != 3 or len(cfg.scale_ranges) != 3 or len(cfg.level_strides) != 3:
            raise ValueError("grids, scale_ranges and level_strides need 3 entries (P3..P5)")
        self.cfg: Solov2Config = cfg
        self.backbone = Backbone(cfg.backbone_widths, cfg.backbone_blocks)
        self.fpn = FPN(self.backbone.out_channels[1:], cfg.fpn_channels)
        self.mask_branch = MaskFeatureBranch(cfg.fpn_channels, cfg.mask_channels, 4,
                                             cfg.backbone_widths[0] if cfg.mask_fine else 0)
        self.head = GridHead(cfg.fpn_channels, cfg.head_channels, cfg.head_convs, cfg.num_classes, cfg.mask_channels)
        self.point_head = (PointHead(3 + cfg.backbone_widths[0] + cfg.mask_channels, cfg.point_hidden, cfg.point_layers)
                           if cfg.point_head else None)
        self.mask_cls: nn.Module | None = None
        if cfg.mask_classifier and cfg.mask_cls_kind == "roi":
            self.mask_cls = RoIMaskClassifier(cfg.mask_channels, cfg.mask_cls_hidden, cfg.num_classes,
                                              cfg.mask_cls_size, cfg.mask_cls_width, cfg.mask_cls_feat,
                                              cfg.mask_cls_stages)
        elif cfg.mask_classifier and cfg.mask_cls_kind == "pooled":
            self.mask_cls = MaskPooledClassifier((cfg.mask_channels, cfg.fpn_channels, cfg.fpn_channels),
                                                 cfg.mask_cls_hidden, cfg.num_classes)
        elif cfg.mask_classifier:
            raise ValueError(f"mask_cls_kind must be 'roi' or 'pooled', not {cfg.mask_cls_kind!r}")
        if cfg.mask_cls_objectness not in ("noisy_or", "max"):
            raise ValueError(f"mask_cls_objectness must be 'noisy_or' or 'max', not {cfg.mask_cls_objectness!r}")

    @classmethod
    def crop_bank(cls, cfg: Solov2Config) -> tuple[int, int]:
        """The RoI classifier without feature channels also learns from crops of other images' objects."""
        if cfg.mask_classifier and cfg.mask_cls_kind == "roi" and cfg.mask_cls_feat == 0:
            return cfg.mask_cls_bank, cfg.mask_cls_size
        return 0, 0

    @classmethod
    def make_targets(cls, cfg: Solov2Config) -> TargetFn:
        """SOLO grid assignment (``targets.assign_cells``): cell_index, cell_inst."""
        return SoloTargets(cfg.grids, cfg.scale_ranges, cfg.sigma)

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
        """Raw outputs for ``postprocess``, or with ``targets`` the loss dict.

        The loss is computed inside forward so DistributedDataParallel sees every parameter it
        touches (the point head is used only by the loss during training).
        """
        out = self.features(images)
        return out if targets is None else self.loss(out, targets)

    def features(self, images: torch.Tensor) -> dict[str, Any]:
        """images: (B, 3, H, W) float in [0, 1], H and W multiples of 32."""
        x = normalise_pixels(images)
        c = self.backbone(x)
        p = self.fpn(c[1:])  # P2..P5
        mask_feat = self.mask_branch(p, c[0])
        cates, kernels = [], []
        for feat, grid in zip(p[1:], self.cfg.grids):
            cate, kernel = self.head(feat, grid)
            cates.append(cate.permute(0, 2, 3, 1).reshape(cate.shape[0], -1, self.cfg.num_classes))
            kernels.append(kernel.permute(0, 2, 3, 1).reshape(kernel.shape[0], -1, kernel.shape[1]))
        return {"cate": torch.cat(cates, 1), "kernel": torch.cat(kernels, 1), "mask_feat": mask_feat,
                "fine": [x, c[0], mask_feat], "pool": [mask_feat, p[1], p[2]]}

    # ------------------------------------------------------------------ training
    def loss(self, out: dict[str, Any], targets: list[dict[str, torch.Tensor]],
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """targets[b]: labels (N,), masks (N, H, W) uint8, cell_index (P,), cell_inst (P,)."""
        cfg = self.cfg
        dice_terms, point_logits, point_labels = [], [], []
        cls_logits, cls_crops, cls_labels = [], [], []
        for b, t in enumerate(targets):
            cells, inst = t["cell_index"], t["cell_inst"]
            if len(cells) == 0:
                continue
            feat = out["mask_feat"][b]
            e, h, w = feat.shape
            # .float(): under bf16 autocast (train --precision) the matmul runs in bf16; the losses in fp32
            logits = (out["kernel"][b, cells] @ feat.reshape(e, -1)).reshape(-1, h, w).float()
            # pool each instance once (not each positive cell: 20 objects can own hundreds of cells)
            masks = t["masks"].float()
            masks_s4 = F.avg_pool2d(masks[None], kernel_size=4)[0] if masks.shape[-1] != w else masks
            dice_terms.append(dice_loss(logits, masks_s4[inst]))
            if self.mask_cls is not None:
                # every GT mask, plus (detached) predicted masks of some positive cells: what inference pools
                pick = torch.randperm(len(cells), generator=generator, device=cells.device)[: cfg.mask_cls_max_cells]
                predicted = torch.sigmoid(logits[pick].detach())
                if cfg.mask_cls_min_iou > 0 and len(pick):  # only masks that already show their object
                    good = mask_iou_pairs(predicted > 0.5, masks_s4[inst[pick]] > 0.5) >= cfg.mask_cls_min_iou
                    pick, predicted = pick[good], predicted[good]
                weights = torch.cat([masks_s4, predicted])
                labels = torch.cat([t["labels"], t["labels"][inst[pick]]])
                if isinstance(self.mask_cls, RoIMaskClassifier):  # crops now, one CNN pass for the batch below
                    cls_crops.append(self.mask_cls.crops(out["fine"][0][b], out["mask_feat"][b], weights,
                                                         cfg.mask_cls_views, cfg.mask_cls_jitter, generator))
                    cls_labels.append(labels.repeat(cfg.mask_cls_views))
                    if len(t.get("object_crops", ())):  # the crop bank
                        crops = t["object_crops"].clone()
                        if cfg.mask_cls_permute:
                            crops[:, :3] = shuffle_channels(crops[:, :3], generator)
                        crops[:, :3] = normalise_pixels(crops[:, :3])
                        cls_crops.append(crops)
                        cls_labels.append(t["object_crop_labels"])
                else:
                    cls_logits.append(self.classify_masks(out, b, weights))
                    cls_labels.append(labels)
            if self.point_head is not None:
                n = len(cells)
                if n > cfg.point_max_instances:
                    pick = torch.randperm(n, generator=generator, device=cells.device)[: cfg.point_max_instances]
                    logits, inst = logits[pick], inst[pick]
                gt = masks[inst]
                coarse_maps = logits.detach().unsqueeze(1)
                boxes = mask_boxes(gt) if cfg.point_box_sampling else None
                coords = uncertain_points_with_randomness(coarse_maps, cfg.point_train_points, cfg.point_oversample,
                                                          cfg.point_importance, generator, boxes)
                coarse = point_sample(logits.unsqueeze(1), coords)[:, 0]
                fine = PointHead.sample_fine([m[b:b + 1] for m in out["fine"]], coords)
                point_logits.append(self.point_head(fine, coarse))
                point_labels.append(point_sample(gt.unsqueeze(1), coords)[:, 0])
        if cls_crops:
            assert isinstance(self.mask_cls, RoIMaskClassifier)
            cls_logits.append(self.mask_cls.classify(torch.cat(cls_crops)))
        losses = {"cate": self.category_loss(out["cate"].float(), targets)}
        zero = out["mask_feat"].sum() * 0
        losses["mask"] = cfg.dice_weight * torch.cat(dice_terms).mean() if dice_terms else zero
        if self.mask_cls is not None:
            losses["mask_cls"] = (cfg.mask_cls_weight * F.cross_entropy(torch.cat(cls_logits).float(), torch.cat(cls_labels))
                                  if cls_logits else zero)
        if self.point_head is not None:
            losses["point"] = (cfg.point_weight * point_bce_loss(torch.cat(point_logits).float(), torch.cat(point_labels))
                               if point_logits else zero)
        return losses

    def category_loss(self, cate: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Focal loss of the grid's category scores (B, cells, C) against the assigned cells, / (positives + 1)."""
        onehot = torch.zeros_like(cate)
        num_pos = 0
        for b, t in enumerate(targets):
            cells = t["cell_index"]
            if len(cells):
                num_pos += len(cells)
                onehot[b, cells, t["labels"][t["cell_inst"]]] = 1.0
        cfg = self.cfg
        return sigmoid_focal_loss(cate, onehot, gamma=cfg.focal_gamma, alpha=cfg.focal_alpha) / (num_pos + 1)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def postprocess(self, out: dict[str, Any], b: int, valid_hw: tuple[int, int], out_hw: tuple[int, int],
                    refine: bool | None = None) -> dict[str, torch.Tensor]:
        """Masks (K, out_h, out_w) bool, labels (K,) class index, scores (K,) for image ``b`` of a batch.

        ``valid_hw`` is the part of the padded input that holds the (resized) image; masks are cropped
        to it and resized to ``out_hw`` (the original image size).
        """
        picked = self.select(out, b)
        if picked is None:
            return empty_prediction(out_hw)
        cell, label, scores, logits = picked
        # a cell named with several classes has one mask: refine and upsample it once
        unique, inverse = torch.unique(cell, return_inverse=True)
        first = torch.empty_like(unique).scatter_(0, inverse, torch.arange(len(cell), device=cell.device))
        coarse, factor = self.kept_logits(out, b, unique, logits[first], refine)
        masks, nonempty = logits_to_masks(coarse, factor, valid_hw, out_hw)
        nonempty = nonempty[inverse]
        if nonempty.all():
            return {"masks": masks[inverse], "labels": label, "scores": scores}
        return {"masks": masks[inverse[nonempty]], "labels": label[nonempty], "scores": scores[nonempty]}

    def mask_logits(self, out: dict[str, Any], b: int, cell: torch.Tensor) -> torch.Tensor:
        """(K, h, w) stride-4 mask logits of grid cells ``cell`` of image ``b``: kernel . mask features."""
        feat = out["mask_feat"][b]
        e, h, w = feat.shape
        return (out["kernel"][b, cell] @ feat.reshape(e, -1)).reshape(-1, h, w)

    def select(self, out: dict[str, Any], b: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """SOLOv2's test procedure up to the final top-k: (cell, label, score, stride-4 logits) of the
        kept detections sorted by score, or None. Candidates > ``score_thr``, mask area > stride,
        score x maskness, Matrix NMS, >= ``update_thr``, top ``max_per_img``."""
        cfg = self.cfg
        scores_all = torch.sigmoid(out["cate"][b])  # (cells, C)
        device = scores_all.device
        # A detection's final score is at most its grid score, or with the classifier its cell's
        # objectness (maskness <= 1, Matrix NMS only decays, and decay comes only from higher-scored
        # candidates), so candidates under the final threshold can be dropped before any mask is
        # computed without changing the result.
        candidate = scores_all > cfg.score_thr
        if self.mask_cls is None:
            candidate &= scores_all >= cfg.update_thr
        cell, label = torch.nonzero(candidate, as_tuple=True)
        if len(cell) == 0:
            return None
        scores = scores_all[cell, label]
        if len(scores) > cfg.nms_pre:
            scores, order = scores.topk(cfg.nms_pre)
            cell, label = cell[order], label[order]
        if self.mask_cls is not None:
            # one mask per cell (its classes share it), scored by the cell's objectness; named below
            cell = torch.unique(cell)
            scores = self.objectness(scores_all[cell])
            keep = scores >= cfg.update_thr
            if not keep.any():
                return None
            cell, scores = cell[keep], scores[keep]
            label = torch.zeros_like(cell)
        strides = torch.cat([torch.full((g * g,), s, dtype=torch.float32, device=device)
                             for g, s in zip(cfg.grids, cfg.level_strides)])[cell]
        logits = self.mask_logits(out, b, cell)
        probs = torch.sigmoid(logits)
        # binary masks as 0/1 floats: the area, maskness, crop boxes and Matrix NMS all read them as
        # floats (sums of 0s and 1s are exact), and float reductions are much faster than bool ones
        masks = (probs > cfg.mask_thr).to(probs.dtype)
        area = masks.flatten(1).sum(1)
        # a property of the mask, whatever its class (an empty one is dropped below)
        maskness = (probs * masks).flatten(1).sum(1) / area.clamp(min=1)
        keep = area > strides
        if self.mask_cls is not None:
            # objectness x maskness bounds every final score of the candidate (a class probability is
            # <= 1): those under the threshold need no classifier pass, which is the costly part
            keep &= scores * maskness >= cfg.update_thr
        if not keep.any():
            return None
        # The kept candidates' maps are gathered once, for the classifier and Matrix NMS; ``row`` (None
        # when all are kept) maps them back to ``logits``, which is gathered only for the detections
        # finally kept. From here on a detection is (index of its candidate ``src``, label, score).
        row = None if keep.all() else keep.nonzero()[:, 0]
        if row is not None:
            cell, probs, masks, area, scores, maskness, label = (cell[row], probs[row], masks[row], area[row],
                                                                 scores[row], maskness[row], label[row])
        if self.mask_cls is not None:
            named = self.name_candidates(out, b, cell, scores, probs, masks)
            if named is None:
                return None
            src, label, scores = named
        else:
            src = torch.arange(len(cell), device=device)
        scores = scores * maskness[src]
        keep = scores >= cfg.update_thr  # exact, as above: they cannot pass and decay only lower ones
        if not keep.any():
            return None
        src, label, scores = src[keep], label[keep], scores[keep]
        scores, order = scores.sort(descending=True)
        src, label = src[order], label[order]
        scores = matrix_nms(masks, label, scores, mask_area=area, mask_index=src, kernel=cfg.nms_kernel,
                            sigma=cfg.nms_sigma)
        keep = scores >= cfg.update_thr
        if not keep.any():
            return None
        src, scores, label = src[keep], scores[keep], label[keep]
        scores, order = scores.sort(descending=True)
        order = order[: cfg.max_per_img]
        scores, src, label = scores[: cfg.max_per_img], src[order], label[order]
        return cell[src], label, scores, logits[src if row is None else row[src]]

    def objectness(self, grid: torch.Tensor) -> torch.Tensor:
        """(K,) objectness of candidate cells from their grid class scores ``grid`` (K, C) in [0, 1]
        (``mask_cls_objectness``); never below the best class score."""
        best = grid.max(1).values
        if self.cfg.mask_cls_objectness == "noisy_or":  # (in logs: a product of many factors near 1)
            return torch.maximum(-torch.expm1(torch.log1p(-grid).sum(1)), best)
        return best

    def classify_masks(self, out: dict[str, Any], b: int, weights: torch.Tensor,
                       flip_tta: bool = False, above: torch.Tensor | None = None) -> torch.Tensor:
        """(K, C) class logits of image ``b``'s soft stride-4 masks ``weights`` (K, h, w); ``flip_tta``
        (RoI classifier only): crop and mirror image together; ``above``: weights > 0.5, when known
        (``square_crops``; 0/1 floats). The RoI classifier's training views are cut in ``loss``
        (``RoIMaskClassifier.crops``), batched over the images."""
        if isinstance(self.mask_cls, RoIMaskClassifier):
            return self.mask_cls(out["fine"][0][b], out["mask_feat"][b], weights, flip_tta=flip_tta, above=above)
        assert self.mask_cls is not None
        return self.mask_cls([m[b] for m in out["pool"]], weights)

    def reclassify(self, out: dict[str, Any], b: int, cell: torch.Tensor, objectness: torch.Tensor,
                   logits: torch.Tensor, probs: torch.Tensor, masks: torch.Tensor, area: torch.Tensor
                   ) -> tuple[torch.Tensor, ...] | None:
        """Candidate cells (one mask each, ``objectness`` from the cell's grid scores) named by the
        second-look mask classifier together with the grid branch: class probabilities
        p = softmax(log p_classifier + ``mask_cls_grid_weight`` x log sigmoid(grid class scores)) (a
        product of two experts: the classifier sees the whole mask, the grid cell its centre), and the
        ``mask_cls_topk`` likeliest classes each score objectness x p. Those >= ``update_thr`` are kept
        (the final score only falls from here: maskness <= 1, Matrix NMS decays).

        Why a product: an unsure decision then ranks below a sure one in every image, which is what AP
        measures. The product is compared with ``update_thr``: the candidate threshold, which is higher,
        would drop many right detections.

        Returns the kept (cell, label, score, logits, probs, masks, area), one row per (cell, class);
        ``select`` uses ``name_candidates``, which returns indices instead of copies of the maps."""
        named = self.name_candidates(out, b, cell, objectness, probs)
        if named is None:
            return None
        src, label, scores = named
        return cell[src], label, scores, logits[src], probs[src], masks[src], area[src]

    def name_candidates(self, out: dict[str, Any], b: int, cell: torch.Tensor, objectness: torch.Tensor,
                        probs: torch.Tensor, masks: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``reclassify``'s decision as (src, label, score): ``src`` indexes the candidates, so a cell
        kept with several classes still has one mask, or None when no class of any candidate scores
        ``update_thr``. ``masks``: probs > ``mask_thr`` as 0/1 floats, every one non-empty (``select``'s
        candidates)."""
        assert self.mask_cls is not None
        cfg = self.cfg
        if cfg.num_classes == 1:
            # one class (the bundled class-agnostic weights): a softmax over one class is 1 whatever the
            # classifier says, so its CNN, most of post-processing, is skipped
            prob_cls = objectness.new_ones((len(cell), 1))
        else:
            # the crop box is taken from the pixels > 0.5: with that threshold the caller's masks are those pixels
            above = masks if masks is not None and cfg.mask_thr == 0.5 else None
            log_p = torch.log_softmax(self.classify_masks(out, b, probs, flip_tta=cfg.mask_cls_flip_tta,
                                                          above=above), dim=1)
            if cfg.mask_cls_grid_weight:
                grid = torch.sigmoid(out["cate"][b][cell]).clamp_min(1e-6)
                log_p = log_p + cfg.mask_cls_grid_weight * torch.log(grid)
            prob_cls = torch.softmax(log_p, dim=1)
        top_p, top_c = prob_cls.topk(min(cfg.mask_cls_topk, prob_cls.shape[1]), dim=1)
        scores = (objectness[:, None] * top_p).flatten()
        src = torch.arange(len(cell), device=cell.device).repeat_interleave(top_p.shape[1])
        keep = scores >= cfg.update_thr
        if not keep.any():
            return None
        return src[keep], top_c.flatten()[keep], scores[keep]

    def kept_logits(self, out: dict[str, Any], b: int, cell: torch.Tensor, logits: torch.Tensor,
                    refine: bool | None) -> tuple[torch.Tensor, int]:
        """The kept detections' mask logits before the last bilinear upsampling, and its factor: the
        stride-4 ``logits`` and 4, or with the point head (unless ``refine=False``) its subdivision and
        what is left to input resolution (1 after the default 2 steps). ``postprocess`` upsamples,
        crops, resizes and thresholds them in one step (``logits_to_masks``)."""
        cfg = self.cfg
        use_points = self.point_head is not None if refine is None else (refine and self.point_head is not None)
        if use_points:
            assert self.point_head is not None
            fine = [m[b:b + 1] for m in out["fine"]]
            refined = self.point_head.refine(fine, logits, cfg.subdivision_steps, cfg.subdivision_points)
            return refined, max(1, 4 // (2 ** cfg.subdivision_steps))
        return logits, 4

    def full_logits(self, out: dict[str, Any], b: int, cell: torch.Tensor, logits: torch.Tensor,
                    refine: bool | None) -> torch.Tensor:
        """(K, H, W) float logits at input resolution (``kept_logits`` upsampled), for callers that want
        the soft maps; ``postprocess`` never builds them."""
        coarse, factor = self.kept_logits(out, b, cell, logits, refine)
        if factor == 1:
            return coarse
        return F.interpolate(coarse[:, None], scale_factor=factor, mode="bilinear", align_corners=False)[:, 0]
