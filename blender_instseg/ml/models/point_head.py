"""PointRend-style boundary refinement for SOLOv2's image-level instance masks.

SOLOv2 predicts masks at stride 4, so boundaries are blurred by up to 4 px. Instead of predicting
every pixel at full resolution, an MLP re-predicts only the points where the coarse mask is least
certain (|logit| small), from features sampled at full/half resolution (RGB, stride-2 backbone map,
stride-4 mask features) plus the coarse logit. Training picks points by importance sampling
(k=3 oversampling, beta=0.75); inference doubles the resolution twice, re-predicting the N most
uncertain points each time (Kirillov et al., PointRend, sec. 3.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def point_sample(feat: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``feat`` (B, C, H, W) at ``coords`` (B, P, 2) in [0, 1] (x, y) -> (B, C, P)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)
    return F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(3)


def uncertain_points_with_randomness(coarse_logits: torch.Tensor, num_points: int, oversample: float,
                                     importance: float, generator: torch.Generator | None = None,
                                     boxes: torch.Tensor | None = None) -> torch.Tensor:
    """Training points (N, P, 2): ``importance``*P most uncertain out of ``oversample``*P random, rest uniform.

    ``boxes`` (N, 4) = (x0, y0, x1, y1) in [0, 1] restricts the random draws to a region per instance.
    PointRend samples inside each RoI; our masks are image-sized, and uniform draws over the whole
    image would almost never land on a small object, teaching the head that small objects vanish.
    """
    n = coarse_logits.shape[0]
    device = coarse_logits.device

    def draw(k: int) -> torch.Tensor:
        u = torch.rand(n, k, 2, device=device, generator=generator)
        if boxes is None:
            return u
        return boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2])

    n_sampled = int(num_points * oversample)
    coords = draw(n_sampled)
    logits = point_sample(coarse_logits, coords)[:, 0]  # (N, n_sampled)
    n_uncertain = int(importance * num_points)
    n_random = num_points - n_uncertain
    idx = torch.topk(-logits.abs(), n_uncertain, dim=1).indices
    chosen = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    if n_random > 0:
        chosen = torch.cat([chosen, draw(n_random)], dim=1)
    return chosen


def mask_boxes(masks: torch.Tensor, margin: float = 0.5, min_size: float = 16.0) -> torch.Tensor:
    """(N, H, W) binary -> (N, 4) boxes in [0, 1], grown by ``margin`` of their size and to >= ``min_size`` px."""
    n, h, w = masks.shape
    rows, cols = masks.amax(2) > 0, masks.amax(1) > 0
    y0 = rows.float().argmax(1).float()
    y1 = h - rows.flip(1).float().argmax(1).float()
    x0 = cols.float().argmax(1).float()
    x1 = w - cols.flip(1).float().argmax(1).float()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw = ((x1 - x0) * (1 + margin)).clamp(min=min_size)
    bh = ((y1 - y0) * (1 + margin)).clamp(min=min_size)
    box = torch.stack([(cx - bw / 2) / w, (cy - bh / 2) / h, (cx + bw / 2) / w, (cy + bh / 2) / h], dim=1)
    return box.clamp(0.0, 1.0)


class PointHead(nn.Module):
    """Shared MLP over point features; predicts a residual on the coarse logit.

    The last layer starts at zero so a freshly enabled head reproduces the coarse mask exactly and
    can only move away from it where the point loss says so.
    """

    def __init__(self, fine_channels: int, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.fcs = nn.ModuleList()
        cin = fine_channels + 1
        for _ in range(layers):
            self.fcs.append(nn.Linear(cin, hidden))
            cin = hidden + 1
        self.out = nn.Linear(cin, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """fine: (N, P, C) point features; coarse: (N, P) coarse logits -> refined logits (N, P)."""
        c = coarse.unsqueeze(-1)
        x = fine
        for fc in self.fcs:
            x = F.relu(fc(torch.cat([x, c], dim=-1)))
        return coarse + self.out(torch.cat([x, c], dim=-1)).squeeze(-1)

    @staticmethod
    def sample_fine(fine_maps: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        """Concatenate features of one image's maps (each (1, C, h, w)) at coords (N, P, 2) -> (N, P, C)."""
        n, p, _ = coords.shape
        flat = coords.reshape(1, n * p, 2)
        parts = [point_sample(m, flat)[0].t() for m in fine_maps]  # (N*P, C_i)
        return torch.cat(parts, dim=1).reshape(n, p, -1)

    def refine(self, fine_maps: list[torch.Tensor], coarse_logits: torch.Tensor, steps: int, num_points: int,
               chunk: int = 16) -> torch.Tensor:
        """Upsample (N, h, w) logits by 2**steps, re-predicting the most uncertain points at each step."""
        out = []
        for start in range(0, coarse_logits.shape[0], chunk):
            logits = coarse_logits[start:start + chunk].unsqueeze(1)
            for _ in range(steps):
                logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
                n, _, h, w = logits.shape
                k = min(num_points, h * w)
                flat = logits.reshape(n, h * w)
                idx = torch.topk(-flat.abs(), k, dim=1).indices
                coords = torch.stack([(idx % w).float().add_(0.5).div_(w), (idx // w).float().add_(0.5).div_(h)], dim=-1)
                coarse = torch.gather(flat, 1, idx)
                refined = self(self.sample_fine(fine_maps, coords), coarse)
                flat = flat.scatter(1, idx, refined)
                logits = flat.reshape(n, 1, h, w)
            out.append(logits[:, 0])
        return torch.cat(out, dim=0)
