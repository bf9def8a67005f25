"""PolarMask-lite specifics (the zoo tests cover learning, save/load/predict and the CLI for every model):
ray targets of hand-made shapes, the polar IoU loss, polygon rasterisation, target assignment, letterboxed
post-processing, one image learnt end to end."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.ml.conftest import fit_one_image_best_iou  # noqa: E402

pytestmark = pytest.mark.torch

from blender_instseg.ml.data import InstanceDataset, collate, load_coco_source
from blender_instseg.ml.losses import polar_iou_loss
from blender_instseg.ml.models import build_model
from blender_instseg.ml.models.polarmask import (PolarMask, PolarMaskConfig, assign_polar_targets, instance_outline,
                                                 polar_centerness, polar_points, ray_directions, ray_lengths,
                                                 rasterize_polygons)


def _disc(size: int | tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    m = np.zeros((size, size) if isinstance(size, int) else size, np.uint8)
    cv2.circle(m, centre, radius, 1, thickness=-1)
    return m


def _outline(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    found = instance_outline(mask)
    assert found is not None
    return found


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / (a | b).sum())


def test_disc_rays_all_equal_the_radius() -> None:
    _, centre, outline = _outline(_disc(64, (30, 34), 15))
    np.testing.assert_allclose(centre, [30.5, 34.5])  # mass centre of pixel 30 = its centre 30.5
    rays = ray_lengths(centre[None], outline, 36)
    assert rays.shape == (1, 36)
    np.testing.assert_allclose(rays, 15.0, atol=1.0)
    assert polar_centerness(rays)[0] > 0.95


def test_square_rays_are_half_side_over_cos() -> None:
    sq = np.zeros((64, 64), np.uint8)
    sq[12:52, 20:60] = 1  # side 40, centre (40, 32)
    _, centre, outline = _outline(sq)
    np.testing.assert_allclose(centre, [40.0, 32.0])
    ang = np.arange(36) * (2 * math.pi / 36)
    want = 20.0 / np.maximum(np.abs(np.cos(ang)), np.abs(np.sin(ang)))
    # the outline runs through the outermost half-pixel centres, 0.25 px inside the pixel edges
    np.testing.assert_allclose(ray_lengths(centre[None], outline, 36)[0], want, atol=0.5)
    # off-centre: the ray to the right ends at the right edge, the one to the left at the left edge
    off = ray_lengths(np.array([[30.0, 32.0]]), outline, 4)[0]  # rays at 0, 90, 180, 270 degrees
    np.testing.assert_allclose(off, [30.0, 20.0, 10.0, 20.0], atol=0.3)


def test_rays_take_the_farthest_crossing_and_miss_from_outside() -> None:
    u = np.zeros((64, 64), np.uint8)  # a U: the ray straight up from inside the bottom bar crosses the gap
    u[10:50, 10:20] = 1
    u[10:50, 40:50] = 1
    u[40:50, 10:50] = 1
    _, _, outline = _outline(u)
    up_right = ray_lengths(np.array([[45.0, 45.0]]), outline, 4)[0]  # 0, 90 (down), 180 (left), 270 (up) degrees
    np.testing.assert_allclose(up_right, [5.0, 5.0, 35.0, 35.0], atol=0.3)
    outside = ray_lengths(np.array([[5.0, 45.0]]), outline, 4)[0]
    assert outside[0] == pytest.approx(45.0, abs=0.3) and outside[1] == outside[2] == outside[3] == 0.0


def test_polar_iou_loss_hand_computed() -> None:
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]], requires_grad=True)
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    loss = polar_iou_loss(pred, target)
    # sum max = 2 + 2 + 3 + 4 = 11, sum min = 1 + 2 + 2 + 2 = 7
    torch.testing.assert_close(loss, torch.tensor([math.log(11 / 7), 0.0]))
    loss.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad[0, 0] < 0 and pred.grad[0, 3] > 0  # a short ray grows, a long one shrinks


def test_polygon_of_disc_rays_rasterises_to_the_disc() -> None:
    disc = _disc(64, (32, 32), 20)
    _, centre, outline = _outline(disc)
    rays = ray_lengths(centre[None], outline, 36)
    verts = centre[None, None] + rays[..., None] * ray_directions(36)[None]
    mask = rasterize_polygons(verts, (64, 64))
    assert mask.shape == (1, 64, 64) and mask.dtype == bool
    assert _iou(mask[0], disc) > 0.9
    # drawn directly at twice the resolution: the disc drawn at twice the size
    big = rasterize_polygons(verts, (128, 128), (2.0, 2.0))[0]
    assert _iou(big, _disc(128, (65, 65), 41)) > 0.9
    assert rasterize_polygons(np.zeros((0, 36, 2)), (8, 8)).shape == (0, 8, 8)


def test_target_assignment_levels_positives_and_overlaps() -> None:
    cfg = PolarMaskConfig(num_classes=2)
    size = 256
    big = _disc(size, (128, 128), 60)     # largest ray 60 / 256 = 0.23 -> P5
    small = _disc(size, (70, 70), 8)      # 8 / 256 = 0.03 -> P3
    inner = _disc(size, (140, 140), 12)   # inside the big one: 12 / 256 = 0.05 -> P3, no clash with it
    tiny = np.zeros((size, size), np.uint8)
    tiny[201:204, 201:204] = 1             # between the P3 locations (pixels 8k + 4)
    masks = np.stack([big, small, inner, tiny, np.zeros_like(big)])
    index, inst, rays, ctr = assign_polar_targets(masks, (size, size), cfg)
    points, strides = polar_points((size, size), cfg.level_strides)
    assert len(points) == 32 * 32 + 16 * 16 + 8 * 8
    assert set(inst.tolist()) == {0, 1, 2, 3}  # the empty mask gets nothing
    assert (strides[index[inst == 0]] == 32).all() and (strides[index[inst != 0]] == 8).all()
    for n in (0, 1, 2):  # inside the mask, within 1.5 strides of the mass centre
        pts = points[index[inst == n]]
        assert 1 <= len(pts) <= 16
        assert masks[n][pts[:, 1].astype(int), pts[:, 0].astype(int)].all()
        _, centre, _ = _outline(masks[n])
        assert (np.abs(pts - centre) <= 1.5 * strides[index[inst == n]][:, None]).all()
        assert (rays[inst == n] > 0).all()
    np.testing.assert_array_equal(points[index[inst == 3]], [[204.5, 204.5]])  # nearest location, outside the mask
    assert rays[inst == 3].min() == 0 and ctr[inst == 3][0] > 0.8  # its rays miss on one side; the centre's centerness
    np.testing.assert_allclose(ctr[inst != 3], polar_centerness(rays[inst != 3]), rtol=1e-6)
    assert rays.shape == (len(index), 36) and rays.dtype == np.float32
    # the location nearest a disc's centre (2 px off it in x and y) sees it as a disc: rays about the radius
    near = index[inst == 1][np.argmin(np.abs(points[index[inst == 1]] - 70.5).sum(1))]
    assert rays[index == near].min() > 8.5 - 4 and rays[index == near].max() < 8.5 + 3
    empty = assign_polar_targets(np.zeros((0, size, size), np.uint8), (size, size), cfg)
    assert all(len(a) == 0 for a in empty) and empty[2].shape == (0, 36)


def test_smaller_instance_keeps_a_shared_location() -> None:
    cfg = PolarMaskConfig(num_classes=1, ray_ranges=((0.0, 100.0), (100.0, 200.0), (200.0, 300.0)))  # all on P3
    a = _disc(128, (64, 64), 24)
    b = _disc(128, (66, 66), 16)  # on top of a, centre 2 px away: they want the same locations
    index, inst, _, _ = assign_polar_targets(np.stack([a, b]), (128, 128), cfg)
    alone_a = assign_polar_targets(a[None], (128, 128), cfg)[0]
    alone_b = assign_polar_targets(b[None], (128, 128), cfg)[0]
    assert len(alone_b) == 9 and set(alone_b) < set(alone_a)
    np.testing.assert_array_equal(index[inst == 1], alone_b)  # b keeps all of its locations
    assert set(index[inst == 0]) == set(alone_a) - set(alone_b)  # a only what b left


def test_an_image_without_objects_trains_without_nan() -> None:
    torch.manual_seed(0)
    model = PolarMask(PolarMaskConfig(num_classes=2)).train()
    empty = {"labels": torch.zeros(0, dtype=torch.long), "polar_index": torch.zeros(0, dtype=torch.long),
             "polar_inst": torch.zeros(0, dtype=torch.long), "polar_rays": torch.zeros(0, 36), "polar_ctr": torch.zeros(0)}
    losses = model(torch.rand(2, 3, 64, 64), [empty, empty])
    assert set(losses) == {"cls", "centerness", "mask"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    with pytest.raises(ValueError, match="locations"):
        model(torch.rand(1, 3, 64, 64), [{**empty, "labels": torch.tensor([0]), "polar_index": torch.tensor([999]),
                                          "polar_inst": torch.tensor([0]), "polar_rays": torch.ones(1, 36),
                                          "polar_ctr": torch.ones(1)}])


def test_postprocess_draws_the_polygon_through_the_letterbox() -> None:
    model = build_model({"arch": "polarmask", "num_classes": 2})
    model.eval()
    out = model(torch.zeros(1, 3, 64, 64))
    num_points = out["cls"].shape[1]
    out["cls"] = torch.full((1, num_points, 2), -20.0)
    out["ctr"] = torch.full((1, num_points), 20.0)
    out["rays"] = torch.full((1, num_points, 36), 1.0)
    # location (20.5, 12.5) of P3 holds a disc of radius 10, class 1: a 64x128 (h, w) image letterboxed to 32x64
    j = int(np.flatnonzero((polar_points((64, 64), (8, 16, 32))[0] == [20.5, 12.5]).all(1))[0])
    out["cls"][0, j, 1] = 5.0
    out["rays"][0, j] = 10.0
    res = model.postprocess(out, 0, (32, 64), (64, 128))
    assert res["masks"].shape == (1, 64, 128) and res["masks"].dtype == torch.bool
    assert res["labels"].tolist() == [1] and res["scores"].tolist() == pytest.approx([1 / (1 + math.exp(-5))])
    assert _iou(res["masks"][0].numpy(), _disc((64, 128), (41, 25), 20)) > 0.9  # twice as large, clipped at y = 64
    model.set_score_threshold(0.999)
    assert model.postprocess(out, 0, (32, 64), (64, 128))["masks"].shape == (0, 64, 128)


@pytest.mark.slow
def test_learns_one_image_end_to_end(shapes_root: Path) -> None:
    """40 steps on one image with 4 objects of 3 classes: every object comes back with its class and mask
    IoU > 0.5 -- locations, ray targets, the ray scale and the rasteriser must agree for that."""
    src = load_coco_source(shapes_root / "annotations.json")
    # level ranges for a 64-px input (the defaults are the paper's, for 256 px and up: at 64 px they would
    # put these 5..10 px objects on the 2x2 P5 grid); a smaller network for speed
    cfg = PolarMaskConfig(num_classes=3, ray_ranges=((0.0, 0.25), (0.25, 0.5), (0.5, 100.0)),
                          backbone_widths=(16, 32, 48, 64, 96), head_channels=48)
    ds = InstanceDataset(src, src.category_ids, 64, seed=0, make_targets=PolarMask.make_targets(cfg))
    images, targets = collate([ds[(7, 0)]])
    gt = targets[0]["masks"].bool()
    assert len(gt) == 4 and len(set(targets[0]["labels"].tolist())) == 3
    torch.manual_seed(0)
    model = PolarMask(cfg)
    best = fit_one_image_best_iou(model, images, targets, steps=40)
    assert (best > 0.5).all(), best
