"""core.evaluation.matching: IoU against pycocotools' own IoU, and the greedy one-to-one rule."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from blender_instseg.core.evaluation import matching
from tests.shapes import draw_scene


def _rle(masks: np.ndarray) -> list[dict]:
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def _scene(seed: int, size: int = 48, max_objects: int = 6):
    _, ids, _ = draw_scene(np.random.default_rng(seed), size, max_objects)
    present = [int(v) for v in np.unique(ids) if v]
    gt = np.stack([ids == i for i in present]) if present else np.zeros((0, size, size), bool)
    return ids, present, gt


@pytest.mark.parametrize("seed", range(6))
def test_iou_with_id_map_equals_pycocotools(seed: int) -> None:
    ids, present, gt = _scene(seed)
    rng = np.random.default_rng(100 + seed)
    # predictions: perturbed GT masks (shifted, some dilated) plus one random blob
    preds = [np.roll(m, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2))) for m in gt]
    blob = np.zeros(ids.shape, bool)
    blob[5:20, 10:30] = True
    preds.append(blob)
    preds = np.stack(preds)
    iou, inst = matching.iou_with_id_map(preds, ids)
    assert inst.tolist() == present
    expected = np.asarray(mask_utils.iou(_rle(preds), _rle(gt), [0] * len(present))).reshape(len(preds), len(present))
    np.testing.assert_allclose(iou, expected, atol=1e-9)
    np.testing.assert_allclose(matching.iou_masks(preds, gt), expected, atol=1e-6)


def test_gt_as_predictions_matches_everything_exactly() -> None:
    ids, present, gt = _scene(3)
    scores = np.linspace(0.9, 0.5, len(present))
    res = matching.match_to_id_map(gt, ids, scores, iou_threshold=0.99)
    assert sorted((m.prediction, m.instance_id) for m in res.matches) == list(enumerate(present))
    assert all(m.iou == 1.0 for m in res.matches)
    assert res.unmatched_predictions == [] and res.missed_instances == []


def test_duplicate_prediction_goes_unmatched_and_higher_score_wins() -> None:
    ids = np.zeros((20, 20), np.uint16)
    ids[2:10, 2:10] = 7
    ids[12:18, 12:18] = 9
    exact = ids == 7
    sloppy = np.zeros_like(exact)
    sloppy[2:10, 2:9] = True  # IoU 56/64 with object 7
    res = matching.match_to_id_map(np.stack([sloppy, exact]), ids, scores=[0.95, 0.6], iou_threshold=0.5)
    assert [(m.prediction, m.instance_id) for m in res.matches] == [(0, 7)]
    assert res.matches[0].iou == pytest.approx(56 / 64)
    assert res.unmatched_predictions == [1]
    assert res.missed_instances == [9]


def test_threshold_rejects_weak_overlap() -> None:
    ids = np.zeros((10, 10), np.uint16)
    ids[0:4, 0:4] = 1
    pred = np.zeros((1, 10, 10), bool)
    pred[0, 0:4, 0:8] = True  # IoU 16/32
    assert matching.match_to_id_map(pred, ids, [1.0], iou_threshold=0.6).matches == []
    got = matching.match_to_id_map(pred, ids, [1.0], iou_threshold=0.5).matches
    assert [(m.instance_id, m.iou) for m in got] == [(1, 0.5)]


def test_empty_inputs() -> None:
    ids = np.zeros((8, 8), np.uint16)
    res = matching.match_to_id_map(np.zeros((0, 8, 8), bool), ids)
    assert res.matches == [] and res.missed_instances == [] and res.iou.shape == (0, 0)
    ids[1:3, 1:3] = 4
    res = matching.match_to_id_map(np.zeros((0, 8, 8), bool), ids)
    assert res.missed_instances == [4]
    res = matching.match_to_id_map(np.ones((1, 8, 8), bool), np.zeros((8, 8), np.uint16), [0.5])
    assert res.unmatched_predictions == [0]


def test_bad_shapes_raise_one_line_errors() -> None:
    with pytest.raises(ValueError, match="differs from the id map"):
        matching.iou_with_id_map(np.zeros((1, 4, 4), bool), np.zeros((5, 5), np.uint16))
    with pytest.raises(ValueError, match="scores"):
        matching.greedy_match(np.zeros((2, 1)), [1.0], 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        matching.greedy_match(np.zeros((1, 1)), [1.0], 1.5)
