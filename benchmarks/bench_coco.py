"""Benchmark: instance-id map -> all COCO annotations (compressed RLE + polygons + bbox + area).

Target (issue 2): a 512x512 map with 20 instances in <= 5 ms. Also times the naive per-instance
loop (mask = id_map == i; pycocotools encode; np.nonzero bbox; cv2.findContours) and prints the
ratio. The scene is drawn with OpenCV: overlapping discs, rotated ellipses, boxes and polygons,
some with holes, like a rendered Object Index pass.

    .venv/bin/python benchmarks/bench_coco.py [--size 512] [--instances 20] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blender_instseg.core.formats.coco import encode_id_map  # noqa: E402


def make_scene(size: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((size, size), np.uint16)
    for i in range(1, n + 1):
        c = (int(rng.integers(size // 10, size - size // 10)), int(rng.integers(size // 10, size - size // 10)))
        r = int(rng.integers(size // 40 + 2, size // 8 + 3))
        kind = i % 4
        if kind == 0:
            cv2.circle(m, c, r, i, -1)
            cv2.circle(m, c, r // 3, 0, -1)  # a hole
        elif kind == 1:
            cv2.ellipse(m, c, (r, r // 2 + 1), int(rng.integers(0, 180)), 0, 360, i, -1)
        elif kind == 2:
            cv2.rectangle(m, (c[0] - r, c[1] - r // 2), (c[0] + r, c[1] + r // 2), i, -1)
        else:
            pts = (np.array(c) + rng.integers(-r, r + 1, size=(6, 2))).astype(np.int32)
            cv2.fillPoly(m, [cv2.convexHull(pts)], i)
    return m


def naive(id_map: np.ndarray) -> list[dict]:
    """The usual per-instance loop over full-size masks."""
    out = []
    for i in np.unique(id_map):
        if i == 0:
            continue
        mask = (id_map == i).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(mask))
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        polys = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
        out.append({"id": int(i), "counts": rle["counts"].decode(), "area": int(mask.sum()), "bbox": bbox,
                    "polygons": polys})
    return out


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="id map is SIZE x SIZE (default 512)")
    p.add_argument("--instances", type=int, default=20, help="instances drawn (default 20)")
    p.add_argument("--repeats", type=int, default=200, help="timed repetitions (default 200)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.size < 16 or args.instances < 1 or args.repeats < 1:
        print("error: --size >= 16, --instances >= 1, --repeats >= 1", file=sys.stderr)
        return 2

    id_map = make_scene(args.size, args.instances, args.seed)
    fast = encode_id_map(id_map, polygons=True)
    ref = naive(id_map)
    assert [e.instance_id for e in fast] == [r["id"] for r in ref]
    assert all(e.rle["counts"] == r["counts"] and e.area == r["area"] and e.bbox == r["bbox"]
               for e, r in zip(fast, ref)), "fast and naive encodings disagree"

    t_rle = timed(lambda: encode_id_map(id_map), args.repeats)
    t_all = timed(lambda: encode_id_map(id_map, polygons=True), args.repeats)
    t_naive = timed(lambda: naive(id_map), args.repeats)

    def fmt(ts: list[float]) -> str:
        q = statistics.quantiles(ts, n=10) if len(ts) >= 10 else [min(ts)] * 9
        return f"median {statistics.median(ts):6.2f} ms  p90 {q[8]:6.2f} ms  min {min(ts):6.2f} ms"

    print(f"id map {args.size}x{args.size}, {len(fast)} instances present, {args.repeats} repeats")
    print(f"encode_id_map RLE+bbox+area          {fmt(t_rle)}")
    print(f"encode_id_map RLE+bbox+area+polygons {fmt(t_all)}")
    print(f"naive per-instance loop              {fmt(t_naive)}")
    ratio = statistics.median(t_naive) / statistics.median(t_all)
    ratio_min = min(t_naive) / min(t_all)
    print(f"speed-up (naive / encode_id_map with polygons): {ratio:.1f}x on medians, {ratio_min:.1f}x on minima")
    if args.size == 512 and args.instances == 20:
        target = 5.0
        verdict = "meets" if statistics.median(t_all) <= target else "MISSES"
        print(f"issue-2 target (512x512, 20 instances) <= {target} ms for RLE + polygons: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
