"""Evaluation cost: plain pycocotools segm COCOeval vs our full evaluate (segm + Boundary AP + breakdowns).

Synthetic data in memory: N images of SIZE x SIZE, each with K drawn shapes (ground truth with a
visible_fraction) and K predictions made from them (shifted / eroded / dilated / missed) plus a
few false positives. Both runs see the same data in the same process.

    .venv/bin/python benchmarks/bench_evaluate.py [--images 500] [--instances 20] [--size 512]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_instseg.core.evaluation import metrics as M  # noqa: E402
from blender_instseg.core.evaluation.inputs import quiet  # noqa: E402
from blender_instseg.core.evaluation.evaluate import evaluate  # noqa: E402


def _encode(stack: np.ndarray) -> list[dict]:
    rles = mask_utils.encode(np.asfortranarray(stack))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def make_data(n_images: int, k: int, size: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], []
    kernel = np.ones((3, 3), np.uint8)
    for img_id in range(1, n_images + 1):
        ids = np.zeros((size, size), np.uint16)
        cats = {}
        for inst in range(1, k + 1):
            layer = np.zeros((size, size), np.uint8)
            cx, cy = (int(v) for v in rng.integers(size // 10, size - size // 10, 2))
            r = int(rng.integers(size // 40, size // 8))
            cat = int(rng.integers(1, 4))
            if cat == 1:
                cv2.circle(layer, (cx, cy), r, 1, -1)
            elif cat == 2:
                cv2.rectangle(layer, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
            else:
                cv2.fillPoly(layer, [np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)], 1)
            ids[layer.astype(bool)] = inst
            cats[inst] = (cat, int(layer.sum()))
        present = [i for i in range(1, k + 1) if (ids == i).any()]
        gt_stack = np.stack([(ids == i).astype(np.uint8) for i in present], axis=2)
        images.append({"id": img_id, "width": size, "height": size, "file_name": f"images/{img_id:06d}.png",
                       "seed": img_id, "index": img_id - 1})
        pred_masks, pred_cats = [], []
        for j, (inst, rle) in enumerate(zip(present, _encode(gt_stack))):
            m = gt_stack[:, :, j]
            area = int(m.sum())
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cats[inst][0], "iscrowd": 0,
                         "segmentation": rle, "area": area, "bbox": list(mask_utils.toBbox(rle)),
                         "visible_fraction": min(1.0, area / max(1, cats[inst][1]))})
            op = int(rng.integers(0, 5))
            if op == 0:
                continue
            if op == 1:
                m = cv2.erode(m, kernel, iterations=2)
            elif op == 2:
                m = cv2.dilate(m, kernel, iterations=2)
            elif op == 3:
                m = np.roll(m, int(rng.integers(-6, 7)), axis=1)
            pred_masks.append(m)
            pred_cats.append(cats[inst][0])
        for _ in range(3):  # false positives
            m = np.zeros((size, size), np.uint8)
            cv2.circle(m, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(5, size // 10)), 1, -1)
            pred_masks.append(m)
            pred_cats.append(int(rng.integers(1, 4)))
        for rle, cat in zip(_encode(np.stack(pred_masks, axis=2)), pred_cats):
            preds.append({"image_id": img_id, "category_id": cat, "score": float(rng.uniform(0.05, 1)),
                          "segmentation": rle})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "disc"}, {"id": 2, "name": "box"}, {"id": 3, "name": "triangle"}]}
    return gt, preds


def plain_pycocotools(gt: dict, preds: list[dict]) -> tuple[float, float, np.ndarray]:
    t, c = time.perf_counter(), time.process_time()
    with quiet():
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - t, time.process_time() - c, ev.stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    args = ap.parse_args()

    t = time.perf_counter()
    gt, preds = make_data(args.images, args.instances, args.size)
    print(f"data: {len(gt['images'])} images {args.size}x{args.size}, {len(gt['annotations'])} GT, "
          f"{len(preds)} predictions (made in {time.perf_counter() - t:.1f} s)")

    plain, ours, ours_plots, timing = [], [], [], {}
    plain_cpu, ours_cpu, timing_cpu = [], [], {}
    for _ in range(args.repeat):
        dt_plain, cpu_plain, stats = plain_pycocotools(gt, preds)
        plain.append(dt_plain)
        plain_cpu.append(cpu_plain)
        t, c = time.perf_counter(), time.process_time()
        m = evaluate(gt, preds, plots=False)
        ours.append(time.perf_counter() - t)
        ours_cpu.append(time.process_time() - c)
        if ours[-1] == min(ours):
            timing = m["timing_s"]
        if ours_cpu[-1] == min(ours_cpu):
            timing_cpu = m["timing_cpu_s"]
        assert np.allclose([m["segm"][k] for k in M.STAT_NAMES], stats, atol=1e-12), "segm differs from pycocotools"
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        evaluate(gt, preds, out_dir=tmp, worst=10)
        ours_plots.append(time.perf_counter() - t)

    # CPU seconds of this process (both sides are single-threaded), so the comparison holds on a busy machine
    for label, p, o, stages in (("wall", min(plain), min(ours), timing), ("cpu", min(plain_cpu), min(ours_cpu), timing_cpu)):
        b = stages["boundary_iou"] + stages["boundary_ap"]
        print(f"[{label}] plain pycocotools segm COCOeval (loadRes+evaluate+accumulate+summarize): {p:.2f} s")
        print(f"[{label}] our evaluate (checks + segm + Boundary IoU/AP + breakdowns): {o:.2f} s "
              f"(x{o / p:.2f} of plain); Boundary IoU + Boundary AP {b:.2f} s = {b / p:.2f} x plain")
        print(f"[{label}]   stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    print(f"our evaluate with report files and plots (wall): {ours_plots[0]:.2f} s")
    print(f"segm AP {m['segm']['AP']:.4f} (identical to pycocotools), boundary AP {m['boundary']['AP']:.4f}")


if __name__ == "__main__":
    main()
