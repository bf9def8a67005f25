"""Generator speed and memory: masks-only loop rate, RGB annotation overhead, --workers speed-up, peak RSS.

    .venv/bin/python benchmarks/bench_generate.py [--masks-images 40] [--rgb-images 4] [--worker-images 40]

1. masks-only full loop at 256x256 (scene build + visibility check/render + visible & amodal
   masks + id map/depth/RGB files + record), then the merge into COCO: images/s (target >= 10).
2. RGB 16 spp at 512x512: annotation overhead = (visibility pre-check + masks/amodal/encoding +
   id-map/depth/record writes) / bare Cycles render time (target <= 5 %).
3. ``--workers 2`` vs ``--workers 1`` wall time for the same masks-only dataset (whole command).
4. Peak RSS (resource.getrusage) of this process and of the child processes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def loop(out: Path, n: int, *, masks_only: bool, res: int, samples: int) -> tuple[float, dict[str, float], float]:
    from blender_instseg.blender import generate, render_image
    from blender_instseg.blender.render import cycles as cy
    from blender_instseg.blender.scene import builder
    from blender_instseg.core.formats import dataset
    from blender_instseg.core.genconfig import GeneratorConfig

    cfg = GeneratorConfig()
    cfg.render.resolution = [res, res]
    cfg.render.masks_only = masks_only
    cfg.render.samples = samples
    cfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    dataset.write_dataset_config(out, generate.dataset_config(cfg, 0, n))
    job = render_image.RenderTask(cfg, out, 0, n, device=cy.choose_device("auto"))
    builder.reset_blender()
    render_image.render_index(job, n, {})  # warm-up (first Cycles sync, shape meshes), not counted
    dataset.record_path(out, n).unlink()
    timings: dict[str, float] = {}
    fixups = hidden = objects = 0
    t0 = time.perf_counter()
    for i in range(n):
        rec = render_image.render_index(job, i, timings)
        fixups += rec["amodal_fixups"]
        hidden += len(rec["hidden"])
        objects += rec["num_objects"]
    elapsed = time.perf_counter() - t0
    print(f"    {objects} objects, {hidden} hidden after the visibility check, amodal_fixups {fixups}")
    t1 = time.perf_counter()
    dataset.merge_dataset([out], mask_format="rle")
    return elapsed, timings, time.perf_counter() - t1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks-images", type=int, default=40)
    ap.add_argument("--rgb-images", type=int, default=4)
    ap.add_argument("--worker-images", type=int, default=40)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        tmpd = Path(tmp)
        n = args.masks_images
        el, tm, merge_s = loop(tmpd / "masks", n, masks_only=True, res=256, samples=1)
        rate = n / el
        print(f"[1] masks-only 256x256 loop: {n} images in {el:.2f} s = {rate:.1f} images/s "
              f"(target >= 10); merge {merge_s * 1000:.0f} ms")
        print("    per image ms: " + ", ".join(f"{k} {v / n * 1000:.1f}" for k, v in tm.items()))
        results["masks_only_256"] = {"images": n, "seconds": el, "images_per_s": rate, "merge_s": merge_s,
                                     "per_image_ms": {k: v / n * 1000 for k, v in tm.items()}}

        n = args.rgb_images
        el, tm, _ = loop(tmpd / "rgb", n, masks_only=False, res=512, samples=16)
        bare = tm.get("render", 0.0)
        overhead = tm.get("check", 0.0) + tm.get("annotate", 0.0) + tm.get("write_labels", 0.0)
        print(f"[2] RGB 16 spp 512x512: {n} images, bare render {bare / n:.2f} s/image; annotation overhead "
              f"{overhead / n * 1000:.0f} ms/image = {100 * overhead / bare:.1f} % (target <= 5 %)")
        print("    per image ms: " + ", ".join(f"{k} {v / n * 1000:.1f}" for k, v in tm.items()))
        results["rgb_512_16spp"] = {"images": n, "bare_render_s": bare / n, "overhead_pct": 100 * overhead / bare,
                                    "per_image_ms": {k: v / n * 1000 for k, v in tm.items()}}

        n = args.worker_images
        walls = {}
        for k in (1, 2):
            cmd = [sys.executable, str(ROOT / "scripts" / "generate.py"), "--out", str(tmpd / f"w{k}"),
                   "--num-images", str(n), "--resolution", "256", "--masks-only", "--progress", "none",
                   "--no-preview", "--workers", str(k)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls[k] = time.perf_counter() - t0
        same = (tmpd / "w1" / "annotations.json").read_bytes() == (tmpd / "w2" / "annotations.json").read_bytes()
        print(f"[3] --workers: {n} masks-only 256x256 images, whole command: 1 worker {walls[1]:.2f} s, "
              f"2 workers {walls[2]:.2f} s, speed-up x{walls[1] / walls[2]:.2f} (identical annotations: {same})")
        results["workers"] = {"images": n, "wall_1": walls[1], "wall_2": walls[2], "speedup": walls[1] / walls[2],
                              "identical": same}

    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"[4] peak RSS: this process (in-process loops) {self_mb:.0f} MiB; largest child process {child_mb:.0f} MiB")
    results["peak_rss_mib"] = {"self": self_mb, "largest_child": child_mb}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
