"""Implicit PointRend on SOLOv2's grid (Cheng, Parkhi and Kirillov, "Pointly-Supervised Instance
Segmentation", 2022; detectron2 ``projects/PointRend`` ``implicit_pointrend``).

Instead of one dynamic 1x1 kernel per grid cell (SOLOv2) or one shared point head (PointRend), each
cell's kernel branch generates the **parameters of its own small MLP** (the "parameter head", like
CondInst's controller). The instance's mask is an implicit function queried at continuous points:

    point feature = [bilinear sample of the stride-4 mask features at the point,
                     point - cell centre (relative, in units of ``rel_scale_cells`` cells),
                     sin / cos of 2 pi (relative coordinates . B)]   (B: fixed Gaussian 2 x pos_freqs)
    logit = MLP_instance(point feature)      (``implicit_layers`` linear layers, ReLU between)

Everything else is SOLOv2-lite, inherited from ``solov2.SOLOv2Lite``: backbone, FPN, mask-feature
branch, category branch and its focal loss, grid targets, maskness, Matrix NMS. Training samples
points per instance (importance sampling on the detached MLP output over the stride-4 grid, plus
uniform points, ``point_head.uncertain_points_with_randomness``) and takes BCE at the points against
the full-resolution GT. Inference queries every kept instance's MLP densely at every pixel centre
of the input (not adaptive subdivision), then crops, resizes and thresholds with ``logits_to_masks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..losses import point_bce_loss
from .solov2 import GridHead, Solov2Config, SOLOv2Lite
from .point_head import mask_boxes, point_sample, uncertain_points_with_randomness


@dataclass
class ImplicitPointRendConfig(Solov2Config):
    """SOLOv2-lite's settings plus the implicit head's; ``point_head`` is always false (the implicit
    head replaces it), so ``train --point-head`` (a switch inherited from SOLOv2) has no effect here."""

    arch: ClassVar[str] = "implicit_pointrend"
    mask_channels: int = 16  # features sampled at each point (the MLP's input width grows with it)
    point_head: bool = False
    mask_classifier: bool = False  # not trained by this model's loss
    implicit_hidden: int = 8
    implicit_layers: int = 3
    pos_freqs: int = 8
    rel_scale_cells: float = 4.0
    params_l2: float = 1e-5  # detectron2's PARAMS_L2_REGULARIZER
    point_max_instances: int = 64

    def __post_init__(self) -> None:
        self.point_head = False
        self.mask_classifier = False
        if self.implicit_layers < 1 or self.implicit_hidden < 1 or self.pos_freqs < 0:
            raise ValueError("implicit_layers and implicit_hidden must be >= 1, pos_freqs >= 0")


def mlp_shapes(in_dim: int, hidden: int, layers: int) -> list[tuple[int, int]]:
    """(out, in) of each linear layer of the per-instance MLP; the last one has one output (the logit)."""
    dims = [in_dim] + [hidden] * (layers - 1) + [1]
    return list(zip(dims[1:], dims[:-1]))


def run_dynamic_mlp(params: torch.Tensor, x: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
    """Per-instance MLPs: ``params`` (K, n_params) laid out layer by layer as [W (out x in, row-major), b (out)];
    ``x`` (K, P, in) -> logits (K, P). Weights are scaled by 1/sqrt(fan_in) (He-style), so parameters of
    unit size give unit-size activations whatever the width."""
    k = params.shape[0]
    offset = 0
    for i, (o, n) in enumerate(shapes):
        w = params[:, offset:offset + o * n].reshape(k, o, n) * n ** -0.5
        offset += o * n
        bias = params[:, offset:offset + o]
        offset += o
        x = torch.baddbmm(bias[:, None, :], x, w.transpose(1, 2))
        if i < len(shapes) - 1:
            x = F.relu(x)
    return x[..., 0]


class ImplicitPointRend(SOLOv2Lite):
    summary = "Implicit PointRend on SOLOv2's grid: each cell generates its own small MLP, queried at continuous points"

    def __init__(self, cfg: ImplicitPointRendConfig) -> None:
        super().__init__(cfg)
        self.cfg: ImplicitPointRendConfig = cfg
        self.in_dim = cfg.mask_channels + 2 + 2 * cfg.pos_freqs
        self.shapes = mlp_shapes(self.in_dim, cfg.implicit_hidden, cfg.implicit_layers)
        self.num_params = sum(o * n + o for o, n in self.shapes)
        self.head = GridHead(cfg.fpn_channels, cfg.head_channels, cfg.head_convs, cfg.num_classes, self.num_params)
        # parameters of unit size (run_dynamic_mlp scales the weights by 1/sqrt(fan_in))
        torch.nn.init.normal_(self.head.kernel_out.weight, std=1.0 / math.sqrt(9 * cfg.head_channels))
        gen = torch.Generator().manual_seed(0)  # fixed, and saved with the weights
        self.register_buffer("pos_matrix", torch.randn(2, cfg.pos_freqs, generator=gen))
        centres, scales = [], []
        for g in cfg.grids:
            c = (torch.arange(g, dtype=torch.float32) + 0.5) / g
            yy, xx = torch.meshgrid(c, c, indexing="ij")
            centres.append(torch.stack([xx, yy], -1).reshape(-1, 2))
            scales.append(torch.full((g * g,), cfg.rel_scale_cells / g))
        self.register_buffer("cell_centre", torch.cat(centres), persistent=False)
        self.register_buffer("cell_scale", torch.cat(scales), persistent=False)

    # ------------------------------------------------------------------ the implicit function
    def encode(self, cell: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Coordinate part of the point features (K, P, 2 + 2 pos_freqs) for grid cells ``cell`` (K,) at
        ``coords`` (K, P, 2) in [0, 1] (x, y) of the padded input."""
        rel = (coords - self.cell_centre[cell][:, None]) / self.cell_scale[cell][:, None, None]
        proj = 2 * math.pi * rel @ self.pos_matrix.to(rel.dtype)
        return torch.cat([rel, proj.sin(), proj.cos()], -1)

    def query(self, out: dict[str, Any], b: int, cell: torch.Tensor, coords: torch.Tensor,
              params: torch.Tensor | None = None, chunk_points: int = 1 << 20) -> torch.Tensor:
        """Logits (K, P) of grid cells ``cell`` (K,) of image ``b`` at ``coords``: (K, P, 2) per instance or
        (P, 2) shared by all, in [0, 1] (x, y). ``params`` defaults to the kernel branch's output.
        Instances are done in chunks of about ``chunk_points`` points."""
        if params is None:
            params = out["kernel"][b, cell]
        feat = out["mask_feat"][b:b + 1]
        k = len(cell)
        shared = coords.ndim == 2
        p = coords.shape[-2]
        if k == 0:
            return feat.new_zeros((0, p))
        if shared:
            fine_shared = point_sample(feat, coords[None])[0].t()  # (P, E)
        step = max(1, chunk_points // max(1, p))
        parts = []
        for s in range(0, k, step):
            c = cell[s:s + step]
            xy = coords.expand(len(c), -1, -1) if shared else coords[s:s + step]
            if shared:
                fine = fine_shared.expand(len(c), -1, -1)
            else:
                fine = point_sample(feat, xy.reshape(1, -1, 2))[0].t().reshape(len(c), p, -1)
            x = torch.cat([fine, self.encode(c, xy)], -1)
            parts.append(run_dynamic_mlp(params[s:s + step], x, self.shapes))
        return torch.cat(parts)

    @staticmethod
    def pixel_centres(h: int, w: int, device: torch.device) -> torch.Tensor:
        """(h*w, 2) centres of an h x w pixel grid in [0, 1] (x, y), row-major."""
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([xx, yy], -1).reshape(-1, 2)

    def query_grid(self, out: dict[str, Any], b: int, cell: torch.Tensor, hw: tuple[int, int],
                   params: torch.Tensor | None = None) -> torch.Tensor:
        """(K, h, w) logits at the pixel centres of an h x w grid over the padded input."""
        h, w = hw
        coords = self.pixel_centres(h, w, out["mask_feat"].device)
        return self.query(out, b, cell, coords, params).reshape(-1, h, w)

    # ------------------------------------------------------------------ training
    def loss(self, out: dict[str, Any], targets: list[dict[str, torch.Tensor]],
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Focal loss of the categories (SOLOv2's), point BCE of each positive cell's MLP (at most
        ``point_max_instances`` cells per image, random), L2 of the generated parameters."""
        cfg = self.cfg
        h, w = out["mask_feat"].shape[-2:]
        point_logits, point_labels, l2 = [], [], []
        for b, t in enumerate(targets):
            cells, inst = t["cell_index"], t["cell_inst"]
            if len(cells) == 0:
                continue
            if len(cells) > cfg.point_max_instances:
                pick = torch.randperm(len(cells), generator=generator, device=cells.device)[: cfg.point_max_instances]
                cells, inst = cells[pick], inst[pick]
            params = out["kernel"][b, cells]
            gt = t["masks"][inst].float()
            with torch.no_grad():
                coarse = self.query_grid(out, b, cells, (h, w), params.detach())
            boxes = mask_boxes(gt) if cfg.point_box_sampling else None
            coords = uncertain_points_with_randomness(coarse[:, None], cfg.point_train_points, cfg.point_oversample,
                                                      cfg.point_importance, generator, boxes)
            point_logits.append(self.query(out, b, cells, coords, params))
            point_labels.append(point_sample(gt[:, None], coords)[:, 0])
            l2.append((params ** 2).sum(1))
        zero = out["mask_feat"].sum() * 0 + out["kernel"].sum() * 0
        losses = {"cate": self.category_loss(out["cate"], targets)}
        if point_logits:
            losses["mask"] = cfg.point_weight * point_bce_loss(torch.cat(point_logits), torch.cat(point_labels))
            losses["params"] = cfg.params_l2 * torch.cat(l2).mean()
        else:
            losses["mask"] = losses["params"] = zero
        return losses

    # ------------------------------------------------------------------ inference
    def mask_logits(self, out: dict[str, Any], b: int, cell: torch.Tensor) -> torch.Tensor:
        """Stride-4 logits (for SOLOv2's maskness, area filter and Matrix NMS): the MLPs at the mask-feature pixels."""
        return self.query_grid(out, b, cell, tuple(out["mask_feat"].shape[-2:]))

    def kept_logits(self, out: dict[str, Any], b: int, cell: torch.Tensor, logits: torch.Tensor,
                    refine: bool | None) -> tuple[torch.Tensor, int]:
        """Every pixel centre of the input queried (factor 1); ``refine=False``: the stride-4 logits (factor 4)."""
        h, w = out["mask_feat"].shape[-2:]
        if refine is False:
            return logits, 4
        return self.query_grid(out, b, cell, (4 * h, 4 * w)), 1
