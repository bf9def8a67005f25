"""PolarMask-lite: an instance is a centre plus 36 ray lengths (Xie et al., PolarMask, CVPR 2020), made small.

An FCOS-style dense head on P3..P5 of the shared backbone + FPN predicts, per feature location,
class scores, a *polar centerness* and ``num_rays`` ray lengths at equal angles. A detection's
mask is the polygon through the ray end points, rasterised with OpenCV; nothing is predicted
per pixel, so the mask costs nothing to train beyond the 36 numbers, but only star-shaped
outlines (seen from the location) are exact.

Geometry (shared by the targets, the loss and the rasteriser): continuous pixel coordinates as in
``layers/boxes.py`` (pixel ``i`` covers ``[i, i + 1)``); the location of feature cell ``(i, j)`` of a
level with stride ``s`` is the centre of pixel ``(i s + s / 2, j s + s / 2)`` (FCOS's points), so
a location whose pixel is in a mask lies inside the mask's outline; ray ``k`` points at angle
``2 pi k / num_rays`` from +x towards +y (image down), i.e. direction ``(cos, sin)``.

Where it differs from the paper (for 256-px inputs, CPUs and training from scratch): GroupNorm and
two-conv towers; P3..P5 only, with the paper's FCOS size ranges (64 / 128 px on 800-px images)
scaled to the input size; the level is chosen once per instance by its largest ray from the mass
centre (the paper checks each location's box distances); positive locations must lie inside the
mask; ray targets are exact ray/outline intersections on the pixel-edge outline (the paper takes
the farthest dense-contour point at the nearest integer angle within +-3 degrees, and 1e-6 when
there is none, which leaves small objects with holes in their targets); rays are predicted in units
of the level stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...core.formats.coco import bbox_of_mask, mask_to_polygons
from ..losses import polar_iou_loss, sigmoid_focal_loss
from ..layers.boxes import batched_nms, clip_boxes
from .backbone import Backbone, conv_gn
from .base import InstanceSegModel, ModelConfigBase, TargetFn, empty_prediction
from .fpn import FPN
from .solov2 import normalise_pixels

_RAY_EXP_CLAMP = 10.0  # bound on the ray exponent: an untrained head cannot produce inf rays


@dataclass
class PolarMaskConfig(ModelConfigBase):
    """Everything needed to rebuild the network; stored as JSON beside every checkpoint."""

    arch: ClassVar[str] = "polarmask"
    head_channels: int = 64
    head_convs: int = 2
    num_rays: int = 36
    level_strides: tuple[int, ...] = (8, 16, 32)  # P3..P5
    # largest ray from the mass centre per level, as fractions of the input size: FCOS/PolarMask's
    # (-1, 64), (64, 128), (128, ...) px on 800-px inputs
    ray_ranges: tuple[tuple[float, float], ...] = ((0.0, 0.08), (0.08, 0.16), (0.16, 100.0))
    center_radius: float = 1.5  # positives: locations within this many strides of the mass centre (paper: 1.5)
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    mask_weight: float = 1.0  # polar IoU loss
    centerness_weight: float = 1.0
    # inference (PolarMask test settings)
    score_thr: float = 0.05  # candidates: class score x centerness
    nms_pre: int = 1000
    nms_iou: float = 0.5  # per-class NMS on the polygons' boxes
    update_thr: float = 0.05  # final score threshold
    max_per_img: int = 100


# ---------------------------------------------------------------------- geometry (numpy, shared)
def ray_directions(num_rays: int) -> np.ndarray:
    """(R, 2) unit vectors (cos, sin) of the ray angles 2 pi k / R, k = 0..R-1."""
    ang = np.arange(num_rays, dtype=np.float64) * (2 * math.pi / num_rays)
    return np.stack([np.cos(ang), np.sin(ang)], 1)


def polar_points(image_hw: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Locations of all levels, (P, 2) float x, y, in (level, y, x) order (the head's), and each one's stride (P,).

    Cell ``(i, j)`` -> the centre of pixel ``(j s + s // 2, i s + s // 2)``.
    """
    pts, st = [], []
    for s in strides:
        h, w = math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s)
        ys, xs = np.meshgrid(np.arange(h) * s + s // 2 + 0.5, np.arange(w) * s + s // 2 + 0.5, indexing="ij")
        pts.append(np.stack([xs.ravel(), ys.ravel()], 1))
        st.append(np.full(h * w, s, np.float64))
    return np.concatenate(pts), np.concatenate(st)


def instance_outline(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Largest 8-connected piece of a mask -> (its mask, mass centre (2,) x y, outline (M, 2)); None if empty.

    The outline is the polygon of ``core.formats.coco.mask_to_polygons`` (through the outermost half-pixel
    centres, 0.25 px inside the pixel edges, so it rasterises back to the same pixels; holes are
    bridged in, which the farthest-crossing rule of :func:`ray_lengths` ignores). Only the largest
    piece, as in the paper's code: rays from one centre cannot describe several pieces. Works on
    the mask's bounding box, so the cost follows the object's size, not the image's.
    """
    m = (np.asarray(mask) != 0).astype(np.uint8)
    x0, y0, w, h = (int(v) for v in bbox_of_mask(m))
    if w == 0:
        return None
    crop = m[y0:y0 + h, x0:x0 + w]
    n, cc, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    if n > 2:  # several pieces: keep the largest
        crop = (cc == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
        m = np.zeros_like(m)
        m[y0:y0 + h, x0:x0 + w] = crop
    mom = cv2.moments(crop, binaryImage=True)
    centre = np.array([mom["m10"] / mom["m00"] + 0.5 + x0, mom["m01"] / mom["m00"] + 0.5 + y0])
    polygons, _ = mask_to_polygons(crop)
    rings = [np.asarray(p, np.float64).reshape(-1, 2) + (x0, y0) for p in polygons]
    ring = max(rings, key=lambda r: abs(cv2.contourArea(r.astype(np.float32))))
    return m, centre, ring


def ray_lengths(points: np.ndarray, outline: np.ndarray, num_rays: int) -> np.ndarray:
    """(K, 2) points, (M, 2) closed polygon -> (K, R) distance along each ray to its farthest outline crossing.

    Farthest, so that for shapes that are not star-shaped the polygon through the ray ends still
    covers the whole object (the paper takes the farthest contour point too); 0 where a ray misses
    the outline (only possible from a point outside it). Vectorised over points x rays x edges.
    """
    if len(outline) == 0:
        return np.zeros((len(points), num_rays))
    u = ray_directions(num_rays)  # (R, 2)
    e = np.roll(outline, -1, 0) - outline  # (M, 2) edges
    w = outline[None] - points[:, None]  # (K, M, 2): edge starts relative to the points
    # point + t u = start + s e  =>  t = cross(w, e) / cross(u, e), s = cross(w, u) / cross(u, e)
    denom = u[:, 0:1] * e[None, :, 1] - u[:, 1:2] * e[None, :, 0]  # (R, M)
    inv = np.divide(1.0, denom, out=np.zeros_like(denom), where=np.abs(denom) > 1e-12)  # parallel: no crossing
    t = (w[..., 0] * e[:, 1] - w[..., 1] * e[:, 0])[:, None] * inv  # (K, R, M)
    s = np.matmul(w, np.stack([u[:, 1], -u[:, 0]])).transpose(0, 2, 1) * inv  # (K, R, M)
    hit = (s >= -1e-9) & (s <= 1 + 1e-9) & (t >= 0) & (inv != 0)
    return np.where(hit, t, 0.0).max(-1)


def polar_centerness(rays: np.ndarray) -> np.ndarray:
    """sqrt(min / max) over the last axis (paper eq. 2): 1 at the centre of a disc, towards 0 off-centre or on slivers."""
    return np.sqrt(np.clip(rays.min(-1) / np.maximum(rays.max(-1), 1e-6), 0, None))


def rasterize_polygons(vertices: np.ndarray, out_hw: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """(K, R, 2) polygon vertices (input pixels) -> (K, out_h, out_w) bool: pixel centres inside each polygon.

    ``scale`` (x, y) maps input pixels to output pixels, so a polygon is drawn directly at the output
    resolution (a polygon needs no resampling). OpenCV's fillPoly with 4 fractional bits.
    """
    oh, ow = out_hw
    out = np.zeros((len(vertices), oh, ow), np.uint8)
    if len(vertices) == 0:
        return out.astype(bool)
    v = vertices * np.asarray(scale, np.float64) - 0.5  # continuous -> OpenCV pixel-index coordinates
    v = np.clip(v, -4.0 * max(oh, ow), 4.0 * max(oh, ow))
    fixed = np.round(v * 16).astype(np.int32)
    for k in range(len(vertices)):
        cv2.fillPoly(out[k], [fixed[k]], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def assign_polar_targets(masks: np.ndarray, image_hw: tuple[int, int], cfg: PolarMaskConfig
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Positive locations of a sample -> location index (K,), instance index (K,), ray targets (K, R) float32
    and centerness targets (K,) float32.

    Per instance: its largest piece, mass centre and outline (:func:`instance_outline`); the level
    whose ``ray_ranges`` holds its largest ray from the centre (as a fraction of max(H, W)); there,
    the locations within ``center_radius`` strides of the centre (square, as the paper's centre
    sampling) whose pixel is in the mask. If none qualifies, the location in the mask nearest the
    centre, else the nearest one at all: a tiny object between locations, whose rays that miss are 0
    (the polygon is a fan from the location over the object) and whose centerness target is that
    of its mass centre, not 0, so its only detection is not scored away.
    Larger instances go first, so where two claim a location the smaller one keeps it.
    """
    points, strides = polar_points(image_hw, cfg.level_strides)
    level_of = np.repeat(np.arange(len(cfg.level_strides)),
                         [math.ceil(image_hw[0] / s) * math.ceil(image_hw[1] / s) for s in cfg.level_strides])
    owner = np.full(len(points), -1, np.int64)
    rays = np.zeros((len(points), cfg.num_rays), np.float32)
    ctr = np.zeros(len(points), np.float32)
    size = float(max(image_hw))
    px = np.minimum((points[:, 0]).astype(np.int64), image_hw[1] - 1)
    py = np.minimum((points[:, 1]).astype(np.int64), image_hw[0] - 1)
    areas = masks.sum((1, 2), dtype=np.int64)
    for n in np.argsort(-areas, kind="stable"):
        found = instance_outline(masks[n]) if areas[n] else None
        if found is None:
            continue
        piece, centre, outline = found
        from_centre = ray_lengths(centre[None], outline, cfg.num_rays)
        reach = float(from_centre.max()) / size
        level = next((i for i, (lo, hi) in enumerate(cfg.ray_ranges) if lo <= reach <= hi), len(cfg.ray_ranges) - 1)
        on = np.flatnonzero(level_of == level)
        inside = piece[py[on], px[on]] != 0
        off = np.abs(points[on] - centre)
        near = (off <= cfg.center_radius * strides[on][:, None]).all(1)
        chosen = on[inside & near]
        owner[chosen] = n
        rays[chosen] = ray_lengths(points[chosen], outline, cfg.num_rays)
        ctr[chosen] = polar_centerness(rays[chosen])
        if len(chosen) == 0:
            dist = (off ** 2).sum(1) + np.where(inside, 0.0, np.inf if inside.any() else 0.0)
            one = on[int(np.argmin(dist))]
            owner[one] = n
            rays[one] = ray_lengths(points[one][None], outline, cfg.num_rays)[0]
            ctr[one] = polar_centerness(rays[one]) if inside.any() else polar_centerness(from_centre)[0]
    pos = np.flatnonzero(owner >= 0)
    return pos, owner[pos], rays[pos], ctr[pos]


@dataclass(frozen=True)
class PolarTargets:
    """Per-sample target assignment for the data set (picklable, so data-loader workers run it)."""

    cfg: PolarMaskConfig

    def __call__(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        hw = sample["masks"].shape[1:]
        index, inst, rays, ctr = assign_polar_targets(sample["masks"], (int(hw[0]), int(hw[1])), self.cfg)
        return {"polar_index": index, "polar_inst": inst, "polar_rays": rays, "polar_ctr": ctr}


# ---------------------------------------------------------------------- network
class PolarHead(nn.Module):
    """Shared over levels: a class tower (class logits + polar centerness) and a ray tower (R ray lengths)."""

    def __init__(self, cin: int, channels: int, convs: int, num_classes: int, num_rays: int, num_levels: int) -> None:
        super().__init__()

        def tower() -> nn.Sequential:
            return nn.Sequential(*[conv_gn(cin if i == 0 else channels, channels) for i in range(convs)])

        self.cls_tower, self.ray_tower = tower(), tower()
        self.cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.ctr = nn.Conv2d(channels, 1, 3, padding=1)
        self.rays = nn.Conv2d(channels, num_rays, 3, padding=1)
        for conv in (self.cls, self.ctr, self.rays):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls.bias, -math.log((1 - 0.01) / 0.01))  # focal-loss prior 0.01
        self.scales = nn.Parameter(torch.ones(num_levels))  # FCOS/PolarMask learnable per-level scale

    def forward(self, feat: torch.Tensor, level: int, stride: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> class logits (B, HW, classes), centerness logits (B, HW), rays in pixels (B, HW, R)."""
        c, r = self.cls_tower(feat), self.ray_tower(feat)

        def flat(y: torch.Tensor) -> torch.Tensor:  # (B, n, H, W) -> (B, H*W, n) in (y, x) order
            return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, y.shape[1])

        rays = stride * torch.exp((self.scales[level] * self.rays(r)).clamp(-_RAY_EXP_CLAMP, _RAY_EXP_CLAMP))
        return flat(self.cls(c)), flat(self.ctr(c))[..., 0], flat(rays)


class PolarMask(InstanceSegModel):
    summary = "PolarMask-lite: per location class, polar centerness and 36 ray lengths; masks are the ray polygons"

    def __init__(self, cfg: PolarMaskConfig) -> None:
        super().__init__(cfg)
        if len(cfg.level_strides) != 3:
            raise ValueError("level_strides needs 3 entries (P3..P5)")
        if len(cfg.ray_ranges) != len(cfg.level_strides):
            raise ValueError("ray_ranges needs one (low, high) pair per level")
        if cfg.num_rays < 3:
            raise ValueError("num_rays must be at least 3 (a polygon)")
        self.cfg: PolarMaskConfig = cfg
        self.backbone = Backbone(cfg.backbone_widths, cfg.backbone_blocks)
        self.fpn = FPN(self.backbone.out_channels[1:], cfg.fpn_channels)
        self.head = PolarHead(cfg.fpn_channels, cfg.head_channels, cfg.head_convs, cfg.num_classes, cfg.num_rays,
                              len(cfg.level_strides))

    @classmethod
    def make_targets(cls, cfg: PolarMaskConfig) -> TargetFn:
        """Positive locations with their instance, ray and centerness targets (``polar_index``, ``polar_inst``,
        ``polar_rays``, ``polar_ctr``)."""
        return PolarTargets(cfg)

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
        x = normalise_pixels(images)
        p = self.fpn(self.backbone(x)[1:])  # P2..P5
        outs = [self.head(f, i, s) for i, (f, s) in enumerate(zip(p[1:], self.cfg.level_strides))]
        image_hw = (images.shape[2], images.shape[3])
        points, _ = polar_points(image_hw, self.cfg.level_strides)
        out = {"cls": torch.cat([o[0] for o in outs], 1), "ctr": torch.cat([o[1] for o in outs], 1),
               "rays": torch.cat([o[2] for o in outs], 1),
               "points": torch.as_tensor(points, dtype=images.dtype, device=images.device), "image_hw": image_hw}
        return out if targets is None else self.loss(out, targets)

    # ------------------------------------------------------------------ training
    def loss(self, out: dict[str, Any], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Focal class loss over all locations / positives; centerness BCE and polar IoU loss on positives.

        The polar IoU loss is weighted by the centerness targets (the paper's code), so rays from
        near the centre, which describe the object best, count most.
        """
        cfg = self.cfg
        num_points = out["cls"].shape[1]
        cls_terms, ctr_terms, mask_terms, weights = [], [], [], []
        num_pos = 0
        for b, t in enumerate(targets):
            idx, inst = t["polar_index"], t["polar_inst"]
            if len(idx) and int(idx.max()) >= num_points:
                raise ValueError(f"polar targets for more than the network's {num_points} locations")
            onehot = torch.zeros_like(out["cls"][b])
            onehot[idx, t["labels"][inst]] = 1.0
            cls_terms.append(sigmoid_focal_loss(out["cls"][b], onehot, gamma=cfg.focal_gamma, alpha=cfg.focal_alpha))
            num_pos += len(idx)
            if len(idx) == 0:
                continue
            target = t["polar_rays"].to(out["rays"].dtype)
            ctr_target = t["polar_ctr"].to(out["ctr"].dtype)
            ctr_terms.append(F.binary_cross_entropy_with_logits(out["ctr"][b, idx], ctr_target, reduction="none"))
            mask_terms.append(polar_iou_loss(out["rays"][b, idx], target) * ctr_target)
            weights.append(ctr_target)
        zero = out["rays"].sum() * 0
        return {"cls": torch.stack(cls_terms).sum() / max(1, num_pos),
                "centerness": cfg.centerness_weight * torch.cat(ctr_terms).mean() if ctr_terms else zero,
                "mask": (cfg.mask_weight * torch.cat(mask_terms).sum() / torch.cat(weights).sum().clamp(min=1e-6)
                         if mask_terms else zero)}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def postprocess(self, out: dict[str, Any], b: int, valid_hw: tuple[int, int], out_hw: tuple[int, int],
                    refine: bool | None = None) -> dict[str, torch.Tensor]:
        """Masks (K, out_h, out_w) bool, labels (K,), scores (K,) for image ``b``; ``refine`` is ignored (no point head).

        Score = class score x centerness; the best ``nms_pre`` (location, class) pairs above
        ``score_thr`` become polygons, per-class NMS on the polygons' boxes, then the polygons are
        rasterised directly at the output resolution (the letterbox part ``valid_hw`` scaled to ``out_hw``).
        """
        cfg = self.cfg
        device = out["cls"].device
        num_classes = out["cls"].shape[2]
        scores = (torch.sigmoid(out["cls"][b]) * torch.sigmoid(out["ctr"][b])[:, None]).flatten()
        cand = torch.nonzero(scores >= cfg.score_thr).squeeze(1)
        if len(cand) == 0:
            return empty_prediction(out_hw, device)
        top = scores[cand].topk(min(cfg.nms_pre, len(cand)))
        cand, score = cand[top.indices], top.values
        loc, labels = cand // num_classes, cand % num_classes
        reach = 4.0 * max(out["image_hw"])  # longer rays leave the image anyway; keeps the vertices finite
        dirs = torch.as_tensor(ray_directions(cfg.num_rays), dtype=out["rays"].dtype, device=device)
        verts = out["points"][loc][:, None] + out["rays"][b, loc].clamp(max=reach)[..., None] * dirs  # (K, R, 2)
        boxes = clip_boxes(torch.cat([verts.min(1).values, verts.max(1).values], 1), out["image_hw"])
        keep = batched_nms(boxes, score, labels, cfg.nms_iou, max_keep=cfg.max_per_img)
        keep = keep[score[keep] >= cfg.update_thr]
        if len(keep) == 0:
            return empty_prediction(out_hw, device)
        vh, vw = valid_hw
        masks = torch.from_numpy(rasterize_polygons(verts[keep].double().cpu().numpy(), out_hw,
                                                    (out_hw[1] / vw, out_hw[0] / vh))).to(device)
        nonempty = masks.flatten(1).any(1)
        return {"masks": masks[nonempty], "labels": labels[keep][nonempty], "scores": score[keep][nonempty]}
