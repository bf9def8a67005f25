"""YOLACT-lite pieces in process: Fast NMS against a hand-computed case, anchor matching, box crop."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.torch

from blender_instseg.ml.models.yolact import (BACKGROUND, IGNORE, YolactConfig, box_crop, fast_nms, match_anchors,
                                              yolact_anchors)
from blender_instseg.ml.layers.boxes import nms


def test_fast_nms_hand_computed() -> None:
    boxes = torch.tensor([[0, 0, 10, 10],     # A
                          [3, 0, 13, 10],     # B: IoU(A) = 70/130 = 0.54
                          [6, 0, 16, 10],     # C: IoU(A) = 40/160 = 0.25, IoU(B) = 0.54
                          [0, 0, 10, 10],     # D: same box as A, other class
                          [50, 50, 60, 60]],  # E: alone, but below the score threshold
                         dtype=torch.float32)
    scores = torch.tensor([[0.9, 0.01], [0.8, 0.01], [0.6, 0.01], [0.01, 0.7], [0.01, 0.03]])
    coeffs = torch.arange(5, dtype=torch.float32)[:, None].repeat(1, 3)
    kept_boxes, kept_scores, labels, kept_coeffs = fast_nms(boxes, scores, coeffs, iou_thr=0.5, score_thr=0.05,
                                                            top_k=200, max_det=100)
    # Fast NMS drops C too: B (higher score) overlaps it by 0.54, although B itself is suppressed by A
    torch.testing.assert_close(kept_scores, torch.tensor([0.9, 0.7]))
    assert labels.tolist() == [0, 1]
    torch.testing.assert_close(kept_boxes, boxes[[0, 3]])
    assert kept_coeffs[:, 0].tolist() == [0.0, 3.0]
    # greedy NMS would have kept C: the one place the two differ
    assert nms(boxes[:3], scores[:3, 0], 0.5).tolist() == [0, 2]
    _, top1, _, _ = fast_nms(boxes, scores, coeffs, 0.5, 0.05, top_k=200, max_det=1)
    assert top1.tolist() == [pytest.approx(0.9)]
    _, none, _, _ = fast_nms(boxes, scores, coeffs, 0.5, 0.95, top_k=200, max_det=100)
    assert len(none) == 0


def test_anchor_matching_gives_every_object_its_best_anchor() -> None:
    cfg = YolactConfig(num_classes=1)
    anchors = yolact_anchors(cfg, (64, 64))
    assert anchors.shape == ((8 * 8 + 4 * 4 + 2 * 2) * 6, 4)
    gt = torch.tensor([[16.0, 16.0, 32.0, 32.0],    # matches a 16-px anchor exactly
                       [40.0, 40.0, 43.0, 43.0]])   # 3 px: no anchor reaches IoU 0.4
    match = match_anchors(anchors, gt, 0.5, 0.4)
    assert (match == 0).sum() >= 1 and (match == 1).sum() == 1
    assert set(match.unique().tolist()) <= {BACKGROUND, IGNORE, 0, 1}
    empty = match_anchors(anchors, torch.zeros((0, 4)), 0.5, 0.4)
    assert (empty == BACKGROUND).all()


def test_box_crop_uses_pixel_centres_on_either_resolution() -> None:
    boxes = torch.tensor([[4.0, 8.0, 12.0, 16.0]])
    full = box_crop(boxes, (32, 32))
    assert full.sum() == 64 and full[0, 8, 4] and not full[0, 16, 12]
    quarter = box_crop(boxes, (8, 8), scale=0.25)  # prototype resolution (stride 4)
    assert quarter.sum() == 4 and quarter[0, 2:4, 1:3].all()
