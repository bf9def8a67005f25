"""Implicit PointRend on SOLOv2's grid (``--model implicit_pointrend``): the parameter count of the
generated MLPs, and the queried logits against a hand evaluation of one instance's MLP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.torch

from blender_instseg.ml.models import build_model
from blender_instseg.ml.models.implicit_pointrend import ImplicitPointRendConfig, mlp_shapes
from blender_instseg.ml.targets import SoloTargets


def _model(**kw: object):
    torch.manual_seed(0)
    return build_model(ImplicitPointRendConfig(num_classes=2, **kw)).eval()


def test_the_kernel_branch_generates_one_mlp_per_cell_with_the_expected_parameter_count() -> None:
    model = _model(mask_channels=16, pos_freqs=8, implicit_hidden=8, implicit_layers=3)
    in_dim = 16 + 2 + 16
    expected = (in_dim * 8 + 8) + (8 * 8 + 8) + (8 * 1 + 1)
    assert mlp_shapes(in_dim, 8, 3) == [(8, in_dim), (8, 8), (1, 8)]
    assert model.num_params == expected == 361
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    cells = sum(g * g for g in model.cfg.grids)
    assert out["kernel"].shape == (1, cells, expected)
    assert model.point_head is None and model.cfg.point_head is False
    one_layer = _model(implicit_layers=1, pos_freqs=0, mask_channels=8)
    assert one_layer.num_params == (8 + 2) + 1


def _bilinear(feat: np.ndarray, x: float, y: float) -> np.ndarray:
    """Hand bilinear sample of (C, H, W) at (x, y) in [0, 1] (pixel centres at (i + 0.5) / size, edges clamped)."""
    c, h, w = feat.shape
    px, py = min(max(x * w - 0.5, 0), w - 1), min(max(y * h - 0.5, 0), h - 1)
    x0, y0 = int(math.floor(px)), int(math.floor(py))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = px - x0, py - y0
    return ((1 - ay) * ((1 - ax) * feat[:, y0, x0] + ax * feat[:, y0, x1])
            + ay * ((1 - ax) * feat[:, y1, x0] + ax * feat[:, y1, x1]))


def test_query_at_continuous_points_equals_a_hand_evaluation_of_the_instance_mlp() -> None:
    model = _model()
    cfg = model.cfg
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
        cell = torch.tensor([24 * 24 + 5 * 16 + 7])  # level 1 (grid 16), row 5, column 7
        coords = torch.tensor([[[0.31, 0.42], [0.5, 0.5], [0.013, 0.97], [0.4688, 0.3437]]], dtype=torch.float32)
        got = model.query(out, 0, cell, coords)[0].numpy()
    params = out["kernel"][0, cell[0]].double().numpy()
    feat = out["mask_feat"][0].double().numpy()
    centre = np.array([(7 + 0.5) / 16, (5 + 0.5) / 16])
    scale = cfg.rel_scale_cells / 16
    pos = model.pos_matrix.double().numpy()
    for p, (x, y) in enumerate(coords[0].double().numpy()):
        rel = (np.array([x, y]) - centre) / scale
        proj = 2 * np.pi * rel @ pos
        h = np.concatenate([_bilinear(feat, x, y), rel, np.sin(proj), np.cos(proj)])
        offset = 0
        for i, (o, n) in enumerate(mlp_shapes(len(h), cfg.implicit_hidden, cfg.implicit_layers)):
            w = params[offset:offset + o * n].reshape(o, n) / math.sqrt(n)
            b = params[offset + o * n:offset + o * n + o]
            offset += o * n + o
            h = w @ h + b
            if i < cfg.implicit_layers - 1:
                h = np.maximum(h, 0)
        assert offset == model.num_params
        assert got[p] == pytest.approx(h[0], rel=1e-4, abs=1e-5)


def test_shared_and_per_instance_coordinates_and_grid_queries_agree() -> None:
    model = _model()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
        cell = torch.tensor([3, 600, 890])
        grid = model.query_grid(out, 0, cell, (16, 16))
        torch.testing.assert_close(grid, model.mask_logits(out, 0, cell))
        pts = model.pixel_centres(16, 16, grid.device)
        torch.testing.assert_close(model.query(out, 0, cell, pts[None].expand(3, -1, -1)).reshape(3, 16, 16), grid)
        torch.testing.assert_close(model.query(out, 0, cell, pts, chunk_points=256).reshape(3, 16, 16), grid)
        # refine=False: the stride-4 logits upsampled; default: queried at every input pixel
        lo = model.full_logits(out, 0, cell, grid, refine=False)
        hi = model.full_logits(out, 0, cell, grid, refine=None)
        assert lo.shape == hi.shape == (3, 64, 64)
        torch.testing.assert_close(lo, F.interpolate(grid[:, None], scale_factor=4, mode="bilinear")[:, 0])


def test_training_loss_has_point_and_parameter_terms_with_gradients() -> None:
    model = _model()
    model.train()
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 8:30, 8:28] = 1
    masks[1, 34:60, 30:62] = 1
    cfg = model.cfg
    extra = SoloTargets(cfg.grids, cfg.scale_ranges, cfg.sigma)({"masks": masks})
    t = {"masks": torch.from_numpy(masks), "labels": torch.tensor([0, 1]),
         **{k: torch.from_numpy(v) for k, v in extra.items()}}
    losses = model(torch.rand(1, 3, 64, 64), [t])
    assert set(losses) == {"cate", "mask", "params"} and all(torch.isfinite(v) for v in losses.values())
    losses["mask"].backward()
    assert model.head.kernel_out.weight.grad.abs().sum() > 0
    assert model.mask_branch.fuse[0].weight.grad.abs().sum() > 0
