"""core.evaluation.boundary: Boundary IoU against hand-computed cases and the official per-mask algorithm."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from blender_instseg.core.evaluation import boundary


def _square(size: int, r0: int, c0: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[r0:r0 + side, c0:c0 + side] = 1
    return m


def _official_mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """boundary-iou-api ``mask_to_boundary`` as published (one mask, iterations of a 3x3 erosion)."""
    h, w = mask.shape
    img_diag = np.sqrt(h ** 2 + w ** 2)
    dilation = int(round(dilation_ratio * img_diag))
    if dilation < 1:
        dilation = 1
    new_mask = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    kernel = np.ones((3, 3), dtype=np.uint8)
    new_mask_erode = cv2.erode(new_mask, kernel, iterations=dilation)
    mask_erode = new_mask_erode[1: h + 1, 1: w + 1]
    return mask - mask_erode


def test_dilation_pixels_follow_the_official_rounding() -> None:
    assert boundary.dilation_pixels(10, 10) == 1          # 0.28 rounds to 0, floor of 1
    assert boundary.dilation_pixels(512, 512) == 14       # 0.02 * 724.08 = 14.48
    assert boundary.dilation_pixels(256, 256) == 7        # 7.24
    assert boundary.dilation_pixels(480, 640) == 16       # 0.02 * 800 = 16
    with pytest.raises(ValueError):
        boundary.dilation_pixels(10, 10, 0.0)


def test_hand_computed_square_ring() -> None:
    # 10x10 image -> d = 1: a 4x4 square's boundary is its outer ring of 16 - 2*2 = 12 pixels
    a = _square(10, 2, 2, 4)
    band = boundary.mask_to_boundary(a)
    expected = a.copy()
    expected[3:5, 3:5] = 0
    assert band.sum() == 12
    np.testing.assert_array_equal(band, expected)


def test_hand_computed_shifted_square_pair() -> None:
    # A: rows 2-5, cols 2-5; B: the same shifted right by one pixel.
    # rings: 12 px each; A & B = rows 2-5 x cols 3-5 = 12 px, minus the inner 2x2 of either
    # square inside it (rows 3-4 x cols 3-5 = 6 px) -> ring intersection 6, union 12 + 12 - 6 = 18.
    a = _square(10, 2, 2, 4)
    b = _square(10, 2, 3, 4)
    assert boundary.boundary_iou(a, b) == pytest.approx(6 / 18)
    # mask IoU of the same pair: 12 / (16 + 16 - 12)
    assert float(boundary.mask_iou_matrix(a, b)[0, 0]) == pytest.approx(12 / 20)


def test_image_border_counts_as_boundary() -> None:
    # a full 10x10 mask: the zero padding makes the outer ring (100 - 8*8 = 36 px) its boundary
    full = np.ones((10, 10), np.uint8)
    assert boundary.mask_to_boundary(full).sum() == 36


def test_wider_band_hand_computed() -> None:
    # 50x50 with ratio 0.03: d = round(0.03 * 70.71) = 2; a 10x10 square keeps a 2-px ring: 100 - 6*6
    m = _square(50, 10, 10, 10)
    assert boundary.dilation_pixels(50, 50, 0.03) == 2
    assert boundary.mask_to_boundary(m, 0.03).sum() == 64


def test_thin_mask_is_all_boundary_and_identical_masks_score_one() -> None:
    m = np.zeros((40, 40), np.uint8)
    m[5:7, 3:30] = 1  # 2 px thick: erosion removes it entirely
    np.testing.assert_array_equal(boundary.mask_to_boundary(m), m)
    assert boundary.boundary_iou(m, m) == 1.0


def test_empty_masks_give_zero_not_nan() -> None:
    empty = np.zeros((20, 20), np.uint8)
    some = _square(20, 5, 5, 6)
    assert boundary.boundary_iou(empty, empty) == 0.0
    assert boundary.boundary_iou(empty, some) == 0.0
    assert boundary.boundary_iou_matrix(np.zeros((20, 20, 0), np.uint8), some).shape == (0, 1)


def test_stack_matches_official_per_mask_loop() -> None:
    rng = np.random.default_rng(3)
    h, w = 96, 80
    masks = []
    for _ in range(7):
        m = np.zeros((h, w), np.uint8)
        cx, cy, r = int(rng.integers(10, 70)), int(rng.integers(10, 86)), int(rng.integers(3, 25))
        cv2.circle(m, (cx, cy), r, 1, -1)
        masks.append(m)
    masks.append(np.ones((h, w), np.uint8))
    stack = np.stack(masks, axis=2)
    for ratio in (0.02, 0.05):
        got = boundary.boundaries(stack, ratio)
        for i, m in enumerate(masks):
            np.testing.assert_array_equal(got[:, :, i], _official_mask_to_boundary(m, ratio))

    # pairwise matrix = per-pair IoU of official boundaries
    dt = stack[:, :, :4]
    gt = stack[:, :, 3:]
    mat = boundary.boundary_iou_matrix(dt, gt)
    for i in range(dt.shape[2]):
        for j in range(gt.shape[2]):
            bd = _official_mask_to_boundary(dt[:, :, i]).astype(bool)
            bg = _official_mask_to_boundary(gt[:, :, j]).astype(bool)
            union = (bd | bg).sum()
            want = (bd & bg).sum() / union if union else 0.0
            assert mat[i, j] == pytest.approx(want, abs=1e-12)


def test_shift_hurts_boundary_iou_more_than_mask_iou_for_large_objects() -> None:
    size = 512
    disc = np.zeros((size, size), np.uint8)
    cv2.circle(disc, (256, 256), 150, 1, -1)
    shifted = np.roll(disc, 6, axis=1)
    miou = float(boundary.mask_iou_matrix(shifted, disc)[0, 0])
    biou = boundary.boundary_iou(shifted, disc)
    assert miou > 0.95            # the interior dominates mask IoU
    assert biou < miou - 0.2      # the 14-px band is shifted by almost half its width
    assert math.isfinite(biou)
