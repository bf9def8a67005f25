"""Pure-torch detection ops (ml/ops): boxes, NMS, anchors and RoIAlign against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.torch

from blender_instseg.ml.ops.boxes import (batched_nms, box_area, box_iou, cell_anchors, clip_boxes, cxcywh_to_xyxy,
                                          decode_boxes, encode_boxes, generate_anchors, nms, nonempty_boxes,
                                          xyxy_to_cxcywh)


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
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []
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
    iou = box_iou(boxes, boxes)
    expected: list[int] = []
    for i in order:
        if all(iou[i, j] <= 0.6 for j in expected):
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
