"""The vectorised given-IoU evaluator against stock pycocotools COCOeval, bit for bit."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from blender_instseg.core.evaluation.fast_cocoeval import GivenIoUEvaluator
from blender_instseg.core.evaluation.inputs import quiet


class StockGivenIoU(COCOeval):
    """Stock COCOeval (its own evaluateImg and accumulate) with supplied IoU matrices and extra ignores."""

    def __init__(self, gt: COCO, dt: COCO, ious: dict, ignore_ids: Iterable[int] = ()) -> None:
        super().__init__(gt, dt, iouType="bbox")
        self.given, self.extra = ious, set(ignore_ids)

    def computeIoU(self, imgId: int, catId: int):  # noqa: N802
        return self.given[imgId, catId]

    def _prepare(self) -> None:
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                if g["id"] in self.extra:
                    g["ignore"] = 1


def fuzz_case(seed: int, n_images: int = 12, n_cats: int = 3) -> tuple[COCO, COCO]:
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, n_images + 1)]
    anns, preds = [], []
    for img in images:
        for cat in range(1, n_cats + 1):
            for _ in range(int(rng.integers(0, 6))):
                area = float(rng.choice([10.0, 500.0, 1024.0, 5000.0, 9216.0, 20000.0]))
                anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat, "area": area,
                             "bbox": [0, 0, 10, 10], "iscrowd": int(rng.random() < 0.15)})
            for _ in range(int(rng.integers(0, 9))):
                side = float(rng.choice([3.0, 20.0, 32.0, 60.0, 96.0, 150.0]))
                preds.append({"image_id": img["id"], "category_id": cat, "bbox": [0, 0, side, side],
                              "score": float(rng.choice([0.1, 0.5, 0.5, 0.9, rng.random()]))})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(1, n_cats + 1)]}
    with quiet():
        gt.createIndex()
        dt = gt.loadRes(preds)
    return gt, dt


def fuzz_ious(ev: COCOeval, seed: int) -> dict:
    """Random matrices in the stock layout, with many ties (equal IoUs, IoU exactly at thresholds)."""
    rng = np.random.default_rng(seed)
    values = np.array([0.0, 0.2, 0.5, 0.5, 0.55, 0.7, 0.7, 0.75, 0.9, 0.95, 1.0])
    out = {}
    for key in ev.ious:
        d = min(len(ev._dts[key]), ev.params.maxDets[-1])
        g = len(ev._gts[key])
        out[key] = rng.choice(values, size=(d, g)) if d and g else []
    return out


def stock_run(gt: COCO, dt: COCO, ious: dict, ignore: Iterable[int], max_dets: list[int], all_areas: bool) -> COCOeval:
    ev = StockGivenIoU(gt, dt, ious, ignore)
    ev.params.maxDets = max_dets
    if not all_areas:
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
    with quiet():
        ev.evaluate()
        ev.accumulate()
        if all_areas:
            ev.summarize()
    return ev


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_dets", [[1, 10, 100], [1, 3, 5]])
def test_identical_to_stock_on_fuzzed_matrices(seed: int, max_dets: list[int]) -> None:
    gt, dt = fuzz_case(seed)
    # layout from a stock run (its _gts/_dts and ious keys)
    base = StockGivenIoU(gt, dt, {})
    base.params.maxDets = max_dets
    base.computeIoU = lambda img, cat: []  # type: ignore[method-assign]
    with quiet():
        base.evaluate()
    fast = GivenIoUEvaluator(base)
    rng = np.random.default_rng(seed + 100)
    gt_ids = [a["id"] for a in gt.dataset["annotations"]]
    for trial in range(3):
        ious = fuzz_ious(base, seed * 10 + trial)
        ignore = set(rng.choice(gt_ids, size=len(gt_ids) // 4, replace=False).tolist()) if trial else set()
        for all_areas in (True, False):
            ref = stock_run(gt, dt, ious, ignore, max_dets, all_areas)
            got = fast.run(ious, ignore, all_areas=all_areas)
            for k in ("precision", "recall", "scores"):
                np.testing.assert_array_equal(got.eval[k], ref.eval[k], err_msg=f"{k} differs (trial {trial})")
            if all_areas:
                with quiet():
                    got.summarize()
                np.testing.assert_array_equal(got.stats, ref.stats)
            assert (ref.eval["precision"] > 0).any()  # the case is not trivially empty


def test_bad_matrix_shape_is_named() -> None:
    gt, dt = fuzz_case(1)
    base = StockGivenIoU(gt, dt, {})
    base.computeIoU = lambda img, cat: []  # type: ignore[method-assign]
    with quiet():
        base.evaluate()
    ious = fuzz_ious(base, 3)
    key = next(k for k, v in ious.items() if len(v))
    ious[key] = np.zeros((1, 99))
    with pytest.raises(ValueError, match="IoU matrix of image"):
        GivenIoUEvaluator(base).run(ious)
