"""core.evaluation.metrics: numbers equal plain pycocotools, Boundary AP equals the official definition,
breakdowns and per-image counts match hand-built cases (input checks: test_eval_inputs.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from blender_instseg.core.evaluation import metrics as M
from blender_instseg.core.evaluation.inputs import load_ground_truth, load_predictions, quiet


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def perturbed_predictions(gt: dict, seed: int = 0) -> list[dict]:
    """Predictions made from the GT with OpenCV: eroded, dilated, shifted, dropped, duplicated, plus blobs."""
    rng = np.random.default_rng(seed)
    kernel = np.ones((3, 3), np.uint8)
    preds = []
    for ann in gt["annotations"]:
        m = mask_utils.decode(ann["segmentation"])
        op = int(rng.integers(0, 6))
        if op == 0:
            continue                                  # missed
        if op == 1:
            m = cv2.erode(m, kernel, iterations=int(rng.integers(1, 3)))
        elif op == 2:
            m = cv2.dilate(m, kernel, iterations=int(rng.integers(1, 3)))
        elif op == 3:
            m = np.roll(m, int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                      "score": float(rng.uniform(0.05, 1.0)), "segmentation": rle(m)})
        if op == 5:                                   # a lower-scored duplicate
            preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                          "score": float(rng.uniform(0.05, 0.6)), "segmentation": rle(cv2.dilate(m, kernel))})
    for img in gt["images"]:                          # false positives
        m = np.zeros((img["height"], img["width"]), np.uint8)
        cv2.circle(m, tuple(int(v) for v in rng.integers(5, img["width"] - 5, 2)), int(rng.integers(3, 9)), 1, -1)
        preds.append({"image_id": img["id"], "category_id": int(rng.integers(1, 4)),
                      "score": float(rng.uniform(0.05, 1.0)), "segmentation": rle(m)})
    return preds


def perfect_predictions(gt: dict, score: float = 1.0) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": score,
             "segmentation": copy.deepcopy(a["segmentation"])} for a in gt["annotations"]]


def _plain_pycocotools(gt_path: Path, preds: list[dict], cat_ids: list[int] | None = None) -> np.ndarray:
    with quiet():
        gt = COCO(str(gt_path))
        dt = gt.loadRes(copy.deepcopy(preds))
        ev = COCOeval(gt, dt, iouType="segm")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _official_boundary_stats(gt_path: Path | dict, preds: list[dict], dilation_ratio: float = 0.02) -> np.ndarray:
    """boundary-iou-api's Boundary AP: every mask's boundary as RLE, IoU = min(mask IoU, boundary IoU)."""

    def boundary_rle(seg: dict) -> dict:
        m = mask_utils.decode(seg)
        h, w = m.shape
        d = max(1, int(round(dilation_ratio * np.sqrt(h ** 2 + w ** 2))))
        padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
        return mask_utils.encode(np.asfortranarray(m - eroded))

    class OfficialBoundaryEval(COCOeval):
        def computeIoU(self, imgId, catId):  # noqa: N802
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
            if len(gt) == 0 and len(dt) == 0:
                return []
            inds = np.argsort([-d["score"] for d in dt], kind="mergesort")
            dt = [dt[i] for i in inds][: self.params.maxDets[-1]]
            iscrowd = [int(o["iscrowd"]) for o in gt]
            mious = mask_utils.iou([d["segmentation"] for d in dt], [g["segmentation"] for g in gt], iscrowd)
            bious = mask_utils.iou([boundary_rle(d["segmentation"]) for d in dt],
                                   [boundary_rle(g["segmentation"]) for g in gt], iscrowd)
            if len(mious) == 0:
                return mious
            crowd = np.array(iscrowd, bool)
            return np.where(crowd[None, :], mious, np.minimum(mious, bious))  # crowd keeps mask IoU

    with quiet():
        if isinstance(gt_path, dict):
            gt = COCO()
            gt.dataset = copy.deepcopy(gt_path)
            gt.createIndex()
        else:
            gt = COCO(str(gt_path))
        dt = gt.loadRes(copy.deepcopy(preds))
        ev = OfficialBoundaryEval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _run(gt_src, preds, **kw) -> M.Evaluation:
    gt, _ = load_ground_truth(gt_src)
    dt = load_predictions(preds, gt)
    return M.compute_metrics(gt, dt, **kw)


@pytest.mark.parametrize("seed", [0, 1])
def test_segm_and_per_category_equal_plain_pycocotools(shapes, seed: int) -> None:
    path, gt = shapes
    preds = perturbed_predictions(gt, seed)
    m = _run(path, preds).metrics
    want = _plain_pycocotools(path, preds)
    got = [m["segm"][k] for k in M.STAT_NAMES]
    np.testing.assert_array_equal(np.asarray(got), want)
    assert 0.05 < m["segm"]["AP"] < 0.95  # the fixture really is imperfect
    for name, row in m["per_category"].items():
        assert row["AP"] == pytest.approx(_plain_pycocotools(path, preds, [row["id"]])[0], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_boundary_ap_equals_official_definition(shapes, seed: int) -> None:
    path, gt = shapes
    preds = perturbed_predictions(gt, seed)
    if seed == 1:
        gt["annotations"][2]["iscrowd"] = 1  # crowd pairs keep their mask IoU
    m = _run(gt, preds).metrics
    want = _official_boundary_stats(gt, preds)
    got = np.asarray([m["boundary"][k] for k in M.STAT_NAMES])
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert m["boundary"]["AP"] <= m["segm"]["AP"]


def test_perfect_predictions_score_one(shapes) -> None:
    path, gt = shapes
    preds = perfect_predictions(gt)
    before, gt_before = json.dumps(preds), json.dumps(gt)
    m = _run(gt, preds).metrics
    assert json.dumps(preds) == before and json.dumps(gt) == gt_before  # the caller's data is untouched
    assert m["segm"]["AP"] == 1.0 and m["boundary"]["AP"] == 1.0
    assert m["boundary"]["mean_boundary_iou"] == 1.0 and m["boundary"]["mean_mask_iou"] == 1.0
    assert m["at_threshold"]["precision"] == m["at_threshold"]["recall"] == m["at_threshold"]["f1"] == 1.0
    assert m["worst_images"] == []
    assert m["counts"] == {"images": 12, "gt": len(gt["annotations"]), "gt_crowd": 0,
                           "predictions": len(gt["annotations"]),
                           "predictions_above_threshold": len(gt["annotations"])}


def test_shift_lowers_boundary_iou_more_than_mask_iou_for_large_objects() -> None:
    size = 384
    images, anns, preds = [], [], []
    for i in range(3):
        m = np.zeros((size, size), np.uint8)
        cv2.circle(m, (190, 190), 110 + 10 * i, 1, -1)
        images.append({"id": i + 1, "width": size, "height": size, "file_name": f"{i}.png"})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "segmentation": rle(m),
                     "area": int(m.sum())})
        preds.append({"image_id": i + 1, "category_id": 1, "score": 0.9, "segmentation": rle(np.roll(m, 5, 1))})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "disc"}]}
    m = _run(gt, preds).metrics
    b = m["boundary"]
    assert b["mean_mask_iou"] > 0.93
    assert b["mean_boundary_iou"] < b["mean_mask_iou"] - 0.2
    assert m["segm"]["AP50"] == 1.0 and b["AP"] < m["segm"]["AP"]
    assert m["by_size"]["large"]["n_gt"] == 3


def test_counts_at_threshold_and_worst_images_by_hand(shapes) -> None:
    path, gt = shapes
    by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    n = {i: len(v) for i, v in by_image.items()}
    preds = []
    for img, anns in by_image.items():
        if img == 2:
            continue                                   # everything missed
        score = 0.3 if img == 4 else 0.9               # image 4: right masks, scores below threshold
        for a in anns:
            preds.append({"image_id": img, "category_id": a["category_id"], "score": score,
                          "segmentation": a["segmentation"]})
    for a in by_image[3][:1] * 2:                      # image 3: two duplicates = two false positives
        preds.append({"image_id": 3, "category_id": a["category_id"], "score": 0.8,
                      "segmentation": a["segmentation"]})
    m = _run(path, preds, score_threshold=0.5).metrics
    total = sum(n.values())
    t = m["at_threshold"]
    assert (t["tp"], t["fp"], t["fn"]) == (total - n[2] - n[4], 2, n[2] + n[4])
    assert t["precision"] == pytest.approx(t["tp"] / (t["tp"] + 2))
    assert t["recall"] == pytest.approx(t["tp"] / total)
    worst = m["worst_images"]
    assert [w["image_id"] for w in worst] == sorted([2, 4], key=lambda i: (-n[i], i)) + [3]
    assert worst[0]["error"] == 1.0 and worst[0]["n_missed"] == max(n[2], n[4])
    w3 = worst[2]
    assert w3["error"] == pytest.approx(1 - n[3] / (n[3] + 0.5 * 2))
    assert (w3["n_missed"], w3["n_false_pos"], w3["mean_matched_iou"]) == (0, 2, 1.0)
    assert w3["seed"] == gt["images"][2]["seed"] and w3["file_name"] == gt["images"][2]["file_name"]
    # the low scores still count for AP (all scores are used there)
    assert m["segm"]["AP"] < 1.0 and m["segm"]["AR100"] == pytest.approx(
        _plain_pycocotools(path, preds)[8], abs=1e-12)


def test_occlusion_buckets_ignore_other_ground_truth(shapes) -> None:
    path, gt = shapes
    fractions = [0.1, 0.3, 0.6, 0.9, 1.0]
    for i, a in enumerate(gt["annotations"]):
        a["visible_fraction"] = fractions[i % len(fractions)]
    gt["annotations"][0].pop("visible_fraction")
    m = _run(gt, perfect_predictions(gt)).metrics["by_occlusion"]
    assert m["n_unknown"] == 1
    assert [b["AP"] for b in m["buckets"]] == [1.0, 1.0, 1.0, 1.0]
    known = gt["annotations"][1:]
    counts = [sum(1 for a in known if lo <= a["visible_fraction"] < hi or (hi == 1.0 and a["visible_fraction"] == 1.0))
              for lo, hi in [(0, .25), (.25, .5), (.5, .75), (.75, 1.0)]]
    assert [b["n_gt"] for b in m["buckets"]] == counts

    # predict only the heavily occluded objects: those buckets are perfect, the others get nothing
    occluded = {"annotations": [a for a in gt["annotations"] if a.get("visible_fraction", 1) < 0.5]}
    m = _run(gt, perfect_predictions(occluded)).metrics["by_occlusion"]
    assert [b["AP"] for b in m["buckets"]] == [1.0, 1.0, 0.0, 0.0]
    assert [b["boundary_AP"] for b in m["buckets"]] == [1.0, 1.0, 0.0, 0.0]


def test_no_visible_fraction_means_no_buckets(shapes) -> None:
    path, gt = shapes
    for a in gt["annotations"]:
        a.pop("visible_fraction", None)
    m = _run(gt, perfect_predictions(gt)).metrics["by_occlusion"]
    assert m["buckets"] == [] and m["n_unknown"] == len(gt["annotations"])


def test_empty_predictions_are_a_documented_zero(shapes) -> None:
    path, gt = shapes
    m = _run(path, []).metrics
    assert m["segm"]["AP"] == 0.0 and m["segm"]["AR100"] == 0.0 and m["boundary"]["AP"] == 0.0
    assert m["segm"]["APl"] == -1.0          # no large ground truth: pycocotools' "not applicable"
    assert m["boundary"]["mean_boundary_iou"] is None
    assert m["at_threshold"]["tp"] == 0 and m["at_threshold"]["fn"] == len(gt["annotations"])
    assert m["counts"]["predictions"] == 0
    assert all(w["error"] == 1.0 for w in _run(path, [], worst=100).metrics["worst_images"])



def test_given_iou_evaluator_is_identical_to_stock_on_real_masks(shapes) -> None:
    """Segm IoU of real drawn masks, crowd regions and extra ignored ground truth: the vectorised
    re-run (what Boundary AP and the occlusion buckets use) equals stock COCOeval bit for bit."""
    from blender_instseg.core.evaluation.fast_cocoeval import GivenIoUEvaluator

    path, gt = shapes
    preds = perturbed_predictions(gt, seed=7)
    gt["annotations"][0]["iscrowd"] = 1
    gt["annotations"][5]["iscrowd"] = 1
    coco, _ = load_ground_truth(gt)
    dt = load_predictions(preds, coco)
    stock = M.run_eval(COCOeval(coco, dt, iouType="segm"))
    given = GivenIoUEvaluator(stock)
    ignore = {a["id"] for a in gt["annotations"][1::3]}
    for extra in (set(), ignore):
        ref = COCOeval(coco, dt, iouType="segm")
        ref._prepare_orig = ref._prepare

        def prepare(ev=ref, ids=extra):
            ev._prepare_orig()
            for gts in ev._gts.values():
                for g in gts:
                    if g["id"] in ids:
                        g["ignore"] = 1
        ref._prepare = prepare
        ref = M.run_eval(ref)
        fast = given.run(stock.ious, extra)
        with quiet():
            fast.summarize()
        for k in ("precision", "recall", "scores"):
            np.testing.assert_array_equal(fast.eval[k], ref.eval[k])
        np.testing.assert_array_equal(ref.stats, fast.stats)
        assert ref.stats[0] > 0


def test_windowed_decode_equals_pycocotools_decode() -> None:
    from blender_instseg.core.formats.rle_counts import decode_crop, decode_windows

    rng = np.random.default_rng(11)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        n = int(rng.integers(1, 5))
        stack = (rng.random((h, w, n)) < rng.random()).astype(np.uint8)
        if trial % 3 == 0:
            stack[:] = 0
        if trial % 5 == 0:
            stack[:, :, 0] = 1
        rles = [rle(stack[:, :, i]) for i in range(n)]
        full = mask_utils.decode(rles)
        windows = []
        for _ in range(n):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            windows.append((x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))))
        for i, crop in enumerate(decode_windows(rles, windows)):
            x0, y0, x1, y1 = windows[i]
            np.testing.assert_array_equal(crop, full[y0:y1, x0:x1, i])
        x0, y0, x1, y1 = windows[0]
        np.testing.assert_array_equal(decode_crop(rles, windows[0]), full[y0:y1, x0:x1])


def test_best_f1_threshold_is_the_best_of_every_threshold_scored_apart(shapes) -> None:
    """best_f1 (one sort over COCOeval's matches) equals the best of at_threshold's F1 (per-image
    matching) over every score a threshold can sit at, and names the lowest score it keeps."""
    path, gt = shapes
    preds = perturbed_predictions(gt, seed=3)
    levels = [0.2, 0.4, 0.6, 0.8]
    for i, p in enumerate(preds):
        p["score"] = levels[(i * 7) % 4]  # ties: a threshold keeps all of a score or none
    best = _run(path, preds).metrics["best_f1"]
    by_level = {t: _run(path, preds, score_threshold=t).metrics["at_threshold"] for t in levels}
    want = max(levels, key=lambda t: (by_level[t]["f1"], t))
    assert best["score_threshold"] == want
    assert best["f1"] == pytest.approx(max(v["f1"] for v in by_level.values()))
    assert (best["precision"], best["recall"]) == pytest.approx((by_level[want]["precision"], by_level[want]["recall"]))
    assert 0.0 < best["f1"] < 1.0
    assert _run(path, perfect_predictions(gt, score=0.7)).metrics["best_f1"] == {
        "score_threshold": 0.7, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    wrong = [{**p, "category_id": 1 + p["category_id"] % 3} for p in perfect_predictions(gt)]
    assert _run(path, wrong).metrics["best_f1"]["score_threshold"] == 0.0  # nothing right: no threshold
