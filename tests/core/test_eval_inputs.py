"""core.evaluation.inputs: ground truth and predictions load from files and dicts (polygons, missing
iscrowd), the RLE check accepts real strings and rejects malformed ones, bad input fails with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from blender_instseg.core.evaluation.inputs import InputError, load_ground_truth, load_predictions
from blender_instseg.core.evaluation.metrics import compute_metrics
from blender_instseg.core.formats.rle_counts import check_rle_counts
from tests.core.test_metrics import perfect_predictions, rle


def test_ground_truth_with_polygons_and_no_iscrowd_loads() -> None:
    gt = {"images": [{"id": 1, "width": 40, "height": 30}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                           "segmentation": [[5, 5, 25, 5, 25, 20, 5, 20]]}],
          "categories": [{"id": 1, "name": "box"}]}
    coco, root = load_ground_truth(gt)
    assert root is None and "iscrowd" not in gt["annotations"][0]  # the caller's dict is untouched
    ann = coco.anns[1]
    assert ann["iscrowd"] == 0 and ann["area"] == mask_utils.area(ann["segmentation"]) > 0
    m = compute_metrics(coco, load_predictions(perfect_predictions({"annotations": [ann]}), coco)).metrics
    assert m["segm"]["AP"] == pytest.approx(1.0)  # pycocotools: tp / (tp + fp + eps) with tp = 1


def test_rle_check_accepts_real_and_rejects_malformed() -> None:
    rng = np.random.default_rng(0)
    good, sizes = [], []
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        good.append(rle(m)["counts"])
        sizes.append(h * w)
    assert not check_rle_counts(good, sizes).any()
    bad = ["", "abc", "!!!!", "PPPP", good[0][:-1], good[1] + "1", "é", good[2], good[3] + "0"]
    flags = check_rle_counts(bad, [64] * 7 + [sizes[2] + 1, sizes[3]])
    assert flags.all()


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p[0].update(image_id=999), "not in the ground truth"),
    (lambda p: p[0].update(category_id=77), "category id"),
    (lambda p: p[0]["segmentation"].update(counts="!!not-rle"), "malformed RLE"),
    (lambda p: p[0]["segmentation"].update(counts=p[0]["segmentation"]["counts"][:-2]), "malformed RLE"),
    (lambda p: p[0]["segmentation"].update(size=[32, 32]), "does not match"),
    (lambda p: p[0].pop("score"), "no 'score'"),
    (lambda p: p[0].update(score=float("nan")), "finite"),
    (lambda p: p[0].update(segmentation="abc"), "segmentation must be"),
    (lambda p: p.append(7), "not an object"),
])
def test_bad_predictions_raise_one_line_errors(shapes, mutate, message: str) -> None:
    path, gt = shapes
    preds = perfect_predictions(gt)
    mutate(preds)
    coco, _ = load_ground_truth(path)
    with pytest.raises(InputError, match=message) as info:
        load_predictions(preds, coco)
    assert "\n" not in str(info.value)


def test_bad_ground_truth_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no 'annotations'"):
        load_ground_truth({"images": [], "categories": []})
    with pytest.raises(FileNotFoundError):
        load_ground_truth(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_ground_truth(bad)
