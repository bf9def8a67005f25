"""Pure-torch detection layers (ml/layers): boxes, NMS, anchors and RoIAlign against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.torch

from blender_instseg.ml.layers.boxes import (batched_nms, box_area, box_iou, cell_anchors, clip_boxes, cxcywh_to_xyxy,
                                          decode_boxes, encode_boxes, generate_anchors, nms, nonempty_boxes,
                                          xyxy_to_cxcywh)
from blender_instseg.ml.layers.masks import crop_masks_to_rois, paste_masks_in_image
from blender_instseg.ml.layers.roi_align import assign_fpn_levels, multilevel_roi_align, roi_align


# ---------------------------------------------------------------- boxes

def test_box_iou_and_area_hand_case() -> None:
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 0, 0]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    assert box_area(a).tolist() == [4.0, 0.0]
    assert box_area(torch.tensor([[3.0, 3, 1, 1]])).tolist() == [0.0]  # degenerate -> 0, not +4
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0].tolist() == pytest.approx([1 / 7, 1.0, 0.0])
    assert iou[1].tolist() == [0.0, 0.0, 0.0]  # empty box: 0, not NaN


def test_encode_decode_round_trip_and_known_deltas() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(50, 2, generator=g) * 100
    ref = torch.cat([ref, ref + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    tgt = torch.rand(50, 2, generator=g) * 100
    tgt = torch.cat([tgt, tgt + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        deltas = encode_boxes(tgt, ref, weights)
        assert torch.allclose(decode_boxes(deltas, ref, weights), tgt, atol=1e-3)
    # a box shifted by half its width and twice as tall
    d = encode_boxes(torch.tensor([[5.0, -10, 15, 10]]), torch.tensor([[0.0, -5, 10, 5]]))
    assert d[0].tolist() == pytest.approx([0.5, 0.0, 0.0, math.log(2)])
    # class-specific deltas (K, C, 4) against proposals (K, 1, 4)
    dd = torch.zeros(3, 2, 4)
    out = decode_boxes(dd, ref[:3, None])
    assert out.shape == (3, 2, 4) and torch.allclose(out[:, 1], ref[:3])


def test_decode_clamps_huge_scale_deltas() -> None:
    out = decode_boxes(torch.tensor([[0.0, 0, 50, 50]]), torch.tensor([[0.0, 0, 16, 16]]))
    assert torch.isfinite(out).all()
    assert (out[0, 2] - out[0, 0]).item() == pytest.approx(1000.0, rel=1e-4)


def test_clip_nonempty_and_center_form() -> None:
    b = torch.tensor([[-5.0, 2, 70, 90], [10, 10, 10.5, 30]])
    assert clip_boxes(b, (64, 48)).tolist() == [[0.0, 2, 48, 64], [10, 10, 10.5, 30]]
    assert nonempty_boxes(b, 1.0).tolist() == [True, False]
    assert torch.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)


def test_nms_hand_case() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10],    # 0: score .9, kept
                          [1, 0, 11, 10],      # 1: IoU .82 with 0 -> dropped
                          [20, 20, 30, 30],    # 2: kept
                          [0, 0, 10, 5],       # 3: IoU .5 with 0 -> kept at threshold .5 (needs > .5)
                          [21, 20, 31, 30]])   # 4: IoU .82 with 2 but 2 scores lower -> 4 kept, 2 dropped
    scores = torch.tensor([0.9, 0.8, 0.5, 0.4, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [0, 4, 3]
    assert nms(boxes, scores, 0.5, max_keep=2).tolist() == [0, 4]
    assert nms(boxes, scores, 0.45).tolist() == [0, 4]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == [] and nms(boxes, scores, 0.5, max_keep=0).tolist() == []
    # per group: box 1 is another class, so it survives
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0, 0]), 0.5).tolist() == [0, 1, 4, 3]
    with pytest.raises(ValueError, match="nms needs boxes"):
        nms(boxes, scores[:3], 0.5)


def test_nms_matches_a_plain_greedy_loop_on_random_boxes() -> None:
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 60], 1)
    scores = torch.rand(300, generator=g)
    order = scores.argsort(descending=True).tolist()
    iou = box_iou(boxes, boxes).tolist()
    expected: list[int] = []
    for i in order:
        if all(iou[i][j] <= 0.6 for j in expected):
            expected.append(i)
    assert nms(boxes, scores, 0.6).tolist() == expected


def test_anchor_count_sizes_and_positions() -> None:
    cell = cell_anchors([32.0], [0.5, 1.0, 2.0])
    wh = cell[:, 2:] - cell[:, :2]
    assert torch.allclose(wh.prod(1), torch.full((3,), 32.0 ** 2))
    assert torch.allclose(wh[:, 1] / wh[:, 0], torch.tensor([0.5, 1.0, 2.0]))
    levels = generate_anchors([(8, 6), (4, 3)], [4, 8], [[16.0], [32.0]], (0.5, 1.0, 2.0))
    assert [lvl.shape for lvl in levels] == [(8 * 6 * 3, 4), (4 * 3 * 3, 4)]
    ctr = (levels[0][:, :2] + levels[0][:, 2:]) / 2
    # order (y, x, anchor): anchors 0..2 at cell (0, 0), 3..5 at cell (0, 1), row 1 starts at 6 * 3
    assert torch.allclose(ctr[[0, 3, 18]], torch.tensor([[2.0, 2.0], [6.0, 2.0], [2.0, 6.0]]))
    assert levels[1][4].tolist() == pytest.approx([12 - 16, 4 - 16, 12 + 16, 4 + 16])  # ratio 1, cell (0, 1)
    corner = generate_anchors([(2, 2)], [4], [[8.0]], (1.0,), offset=0.0)[0]
    assert corner[:, :2].tolist() == [[-4, -4], [0, -4], [-4, 0], [0, 0]]
    with pytest.raises(ValueError, match="one stride and one size list per level"):
        generate_anchors([(2, 2)], [4, 8], [[8.0]])


# ---------------------------------------------------------------- RoIAlign

def _reference_roi_align(feat: torch.Tensor, rois: torch.Tensor, out_hw: tuple[int, int], scale: float, s: int,
                         aligned: bool) -> torch.Tensor:
    """torchvision's CPU kernel (roi_align_common.h) as a plain loop, one sample at a time."""
    _, c, h, w = feat.shape
    oh, ow = out_hw
    out = torch.zeros(len(rois), c, oh, ow, dtype=feat.dtype)
    off = 0.5 if aligned else 0.0

    def bilinear(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
        if not (-1.0 <= y <= h and -1.0 <= x <= w):
            return torch.zeros(c, dtype=feat.dtype)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        if y0 >= h - 1:
            y0 = y1 = h - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= w - 1:
            x0 = x1 = w - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * img[:, y0, x0] + (1 - ly) * lx * img[:, y0, x1]
                + ly * (1 - lx) * img[:, y1, x0] + ly * lx * img[:, y1, x1])

    for r, (b, *box) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (v * scale - off for v in box)
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / ow, rh / oh
        for i in range(oh):
            for j in range(ow):
                acc = torch.zeros(c, dtype=feat.dtype)
                for iy in range(s):
                    for ix in range(s):
                        acc += bilinear(feat[int(b)], y1 + i * bh + (iy + 0.5) * bh / s, x1 + j * bw + (ix + 0.5) * bw / s)
                out[r, :, i, j] = acc / (s * s)
    return out


def _close(t: torch.Tensor, expected: list[list[float]]) -> bool:
    return torch.allclose(t, torch.tensor(expected, dtype=t.dtype), atol=1e-9)


def _ramp(h: int = 4, w: int = 4) -> torch.Tensor:
    """f(y, x) = x + 10 y + 1 on the pixel centres: bilinear samples inside the map are exactly linear."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (xs + 10 * ys + 1)[None, None]


def test_roi_align_on_a_ramp_is_the_ramp_at_bin_centres() -> None:
    # RoI (1, 1)-(3, 3) in pixels = [0.5, 2.5] in index space after the aligned shift: bins of 1,
    # centres 1 and 2, and a linear function averages to its value at the bin centre
    for s in (1, 2, 3):
        out = roi_align(_ramp(), torch.tensor([[0.0, 1, 1, 3, 3]]), 2, 1.0, s)
        assert _close(out[0, 0], [[12.0, 13.0], [22.0, 23.0]])
    # not aligned: no shift, bins [1, 2] and [2, 3], centres 1.5 and 2.5
    out = roi_align(_ramp(), torch.tensor([[0.0, 1, 1, 3, 3]]), 2, 1.0, 2, aligned=False)
    assert _close(out[0, 0], [[17.5, 18.5], [27.5, 28.5]])
    # spatial_scale: the same RoI in a 2x larger input
    out = roi_align(_ramp(), torch.tensor([[0.0, 2, 2, 6, 6]]), 2, 0.5, 2)
    assert _close(out[0, 0], [[12.0, 13.0], [22.0, 23.0]])


def test_roi_align_sampling_ratio_on_a_spike() -> None:
    # one lit pixel at (1, 1); RoI = index box [0, 2]^2, one bin
    feat = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    feat[0, 0, 1, 1] = 1.0
    roi = torch.tensor([[0.0, 0.5, 0.5, 2.5, 2.5]])
    # sampling 1: one sample at (1, 1) -> 1
    assert roi_align(feat, roi, 1, 1.0, 1).item() == pytest.approx(1.0)
    # sampling 2: samples at 0.5 and 1.5 per axis, each with bilinear weight 0.5 * 0.5 -> 0.25
    assert roi_align(feat, roi, 1, 1.0, 2).item() == pytest.approx(0.25)
    # sampling 4: samples at .25 .75 1.25 1.75 per axis, weights .25 .75 .75 .25 -> (2 / 4) ** 2
    assert roi_align(feat, roi, 1, 1.0, 4).item() == pytest.approx(0.25)
    # sampling 3: samples at 1/3, 1, 5/3 per axis, weights 1/3, 1, 1/3 -> (5 / 9) ** 2
    assert roi_align(feat, roi, 1, 1.0, 3).item() == pytest.approx((5 / 9) ** 2)


def test_roi_align_partly_outside_the_map_follows_torchvisions_boundary_rule() -> None:
    # index box x in [-2, 0], y in [0, 1]; two bins along x, one sample each at x = -1.5 and -0.5, y = 0.5:
    # x < -1 -> 0; x in [-1, 0] reads column 0 at full weight: f(0.5, 0) = 0 + 5 + 1 = 6
    out = roi_align(_ramp(), torch.tensor([[0.0, -1.5, 0.5, 0.5, 1.5]]), (1, 2), 1.0, 1)
    assert _close(out[0, 0], [[0.0, 6.0]])
    # right border: x in [3, 5] -> samples 3.5 (clamped to column 3: 3 + 5 + 1 = 9) and 4.5 (> W = 4 -> 0)
    out = roi_align(_ramp(), torch.tensor([[0.0, 3.5, 0.5, 5.5, 1.5]]), (1, 2), 1.0, 1)
    assert _close(out[0, 0], [[9.0, 0.0]])
    # wholly outside -> zeros
    assert roi_align(_ramp(), torch.tensor([[0.0, 20.0, 20, 30, 30]]), 2, 1.0, 2).abs().sum().item() == 0.0


def test_roi_align_matches_the_reference_kernel_on_random_rois_and_batches() -> None:
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(3, 2, 7, 9, generator=g, dtype=torch.float64)
    k = 17
    xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * 24 - 4  # some start outside the map
    rois = torch.cat([torch.randint(0, 3, (k, 1), generator=g).double(), xy,
                      xy + torch.rand(k, 2, generator=g, dtype=torch.float64) * 16], 1)
    rois[0, 1:] = torch.tensor([5.0, 5, 5, 5])  # empty RoI
    rois[1:4, 0] = 2  # unequal counts per image
    for out_hw, s, aligned in (((2, 3), 1, True), ((3, 3), 2, True), ((2, 2), 3, False)):
        got = roi_align(feat, rois, out_hw, 0.5, s, aligned)
        want = _reference_roi_align(feat, rois, out_hw, 0.5, s, aligned)
        assert got.shape == (k, 2, *out_hw)
        assert torch.allclose(got, want, atol=1e-10), (out_hw, s, aligned)


def test_roi_align_gradcheck_and_errors() -> None:
    feat = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0.0, 0.3, 1.1, 7.7, 6.2], [1.0, -1.0, 2.0, 4.0, 9.0], [1.0, 2.0, 2.0, 6.0, 5.0]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 2, 0.5, 2), (feat,))
    assert roi_align(feat, rois[:0], 2).shape == (0, 1, 2, 2)
    with pytest.raises(ValueError, match="sampling_ratio >= 1"):
        roi_align(feat, rois, 2, sampling_ratio=0)
    with pytest.raises(ValueError, match=r"rois \(K, 5\)"):
        roi_align(feat, rois[:, 1:], 2)


def test_fpn_level_assignment_and_multilevel_pooling() -> None:
    boxes = torch.tensor([[0.0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 223, 223], [0, 0, 8, 8], [0, 0, 2000, 2000]])
    assert assign_fpn_levels(boxes, 2, 5).tolist() == [2, 1, 1, 0, 3]  # levels 4, 3, 3, 2 (clamped), 5 (clamped)
    assert assign_fpn_levels(boxes, 2, 5, canonical_size=112).tolist() == [3, 2, 2, 0, 3]
    # two levels holding constant maps 2 and 3: a RoI pools the level it is assigned to
    feats = [torch.full((1, 1, 16, 16), 2.0), torch.full((1, 1, 8, 8), 3.0)]
    rois = torch.tensor([[0.0, 4, 4, 12, 12], [0, 0, 0, 60, 60], [0, 10, 10, 14, 14]])
    out = multilevel_roi_align(feats, [4, 8], rois, 2, canonical_size=16, canonical_level=2)
    assert out[:, 0, 0, 0].tolist() == [2.0, 3.0, 2.0]
    with pytest.raises(ValueError, match="consecutive powers of two"):
        multilevel_roi_align(feats, [4, 16], rois, 2)


# ---------------------------------------------------------------- mask crop / paste

def test_crop_masks_to_rois_is_roi_align_of_the_gt_mask() -> None:
    masks = torch.zeros(2, 16, 16, dtype=torch.uint8)
    masks[1, 4:12, 2:10] = 1
    boxes = torch.tensor([[2.0, 4, 10, 12], [0, 4, 8, 12], [2, 4, 10, 12]])
    out = crop_masks_to_rois(masks, boxes, torch.tensor([1, 1, 0]), 4)
    assert out.shape == (3, 4, 4)
    assert out[0].eq(1).all() and out[2].eq(0).all()
    assert out[1].tolist() == [[0.0, 1, 1, 1]] * 4  # bin 0 covers columns 0-1, outside the object
    assert crop_masks_to_rois(masks, boxes[:0], torch.zeros(0, dtype=torch.long), 4).shape == (0, 4, 4)


def test_paste_masks_fills_exactly_the_box_and_round_trips_a_crop() -> None:
    ones = torch.ones(2, 28, 28)
    boxes = torch.tensor([[2.0, 3, 10, 9], [0, 0, 0, 0]])
    pasted = paste_masks_in_image(ones, boxes, (12, 12), max_chunk_pixels=1)  # chunks of one mask
    want = torch.zeros(12, 12, dtype=torch.bool)
    want[3:9, 2:10] = True
    assert pasted.dtype == torch.bool and torch.equal(pasted[0], want) and not pasted[1].any()
    # a crop of a disc pasted back into its box gives the disc back (up to boundary pixels)
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    disc = (((xs + 0.5 - 20) ** 2 + (ys + 0.5 - 18) ** 2) <= 12 ** 2).to(torch.uint8)
    box = torch.tensor([[8.0, 6, 32, 30]])
    crop = crop_masks_to_rois(disc[None], box, torch.zeros(1, dtype=torch.long), 28)
    back = paste_masks_in_image(crop, box, (40, 40))[0]
    assert (back != disc.bool()).sum().item() <= 8
    soft = paste_masks_in_image(crop, box, (40, 40), threshold=None)
    assert soft.dtype == torch.float32 and soft.max().item() == pytest.approx(1.0)
