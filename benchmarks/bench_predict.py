"""Inference speed of ``ml predict``: where one image's time goes, and images/s over a folder.

Modes (each prints plain numbers and a Markdown table for docs/benchmarks.md, "Predict"):

  latency     per-image time of ``predict.predict_image``'s parts at 256^2 and 512^2, for 1 and 2
              threads, with and without the second-look classifier's flip TTA: forward (the network,
              ``model(x)``), post-processing (``model.postprocess`` up to numpy arrays), of which the
              second-look classifier's CNN (a network run inside post-processing), and total
              (letterbox + both). Both parts are timed inside the same loop over the images, many
              repeats, median and minimum, so a loaded machine skews them alike. Each thread count runs
              in a fresh child process (``torch.set_num_threads`` holds for the process).
  throughput  images/s of ``predict.run_inference`` (decode, letterbox, forward, post-processing, COCO
              RLE) over a folder, for each --batch-sizes x --workers, at 256^2 and 512^2 on --threads;
              plus the network alone (forward of the same batches) for comparison.

  python benchmarks/bench_predict.py latency --checkpoint RUN/last.pt --images DIR_OR_JSON
  python benchmarks/bench_predict.py throughput --checkpoint RUN/last.pt --images DIR_OR_JSON

Without --checkpoint an untrained SOLOv2-lite is timed (its scores are below the default threshold,
so post-processing has nothing to do: only the forward numbers mean anything); without --images,
drawn shapes (tests/shapes.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _load(checkpoint: str | None, threshold: float | None):  # type: ignore[no-untyped-def]
    """(model, threshold used): predict's default threshold unless --threshold."""
    import torch

    from blender_instseg.ml.checkpoint import load_model
    from blender_instseg.ml.models import Solov2Config, build_model
    from blender_instseg.ml.predict import apply_score_threshold, resolve_score_threshold

    if checkpoint:
        model, ckpt = load_model(checkpoint)
    else:
        torch.manual_seed(0)
        model, ckpt = build_model(Solov2Config(num_classes=8)).eval(), {}
    used = resolve_score_threshold(threshold, ckpt)[0]
    apply_score_threshold(model, used)
    return model, used


def _image_paths(images: str | None, work: Path) -> list[Path]:
    from blender_instseg.ml.data import list_images, load_coco_source

    if images is None:
        from tests.shapes import make_shapes_dataset

        return list_images([make_shapes_dataset(work / "shapes", n_images=20, size=256, seed=0).parent / "images"])
    if images.endswith(".json"):
        return [r.path for r in load_coco_source(images).records]
    return list_images([images])


def latency_child(size: int, threads: int, checkpoint: str | None, images: str | None, count: int, repeats: int,
                  threshold: float | None) -> list[dict]:
    """One process, one thread count: rows for flip TTA on and off."""
    import cv2
    import numpy as np
    import torch

    from blender_instseg.ml.data import letterbox, read_image, to_tensor

    torch.set_num_threads(threads)
    model, used = _load(checkpoint, threshold)
    with tempfile.TemporaryDirectory() as work:
        paths = _image_paths(images, Path(work))[:count]
        imgs = [cv2.resize(read_image(p), (size, size), interpolation=cv2.INTER_LINEAR) for p in paths]
    # one class (the bundled weights): the classifier never runs (SOLOv2Lite.name_candidates)
    has_tta = (hasattr(model.cfg, "mask_cls_flip_tta") and getattr(model, "mask_cls", None) is not None
               and getattr(model.cfg, "num_classes", 2) > 1)
    classifier_s = _time_classifier(model)
    rows = []
    for tta in ((True, False) if has_tta else (None,)):
        if tta is not None:
            model.cfg.mask_cls_flip_tta = tta
        times: dict[str, list[float]] = {"forward": [], "post": [], "classifier": [], "total": []}
        kept = []
        with torch.no_grad():
            model(to_tensor(letterbox(imgs[0], size)[0])[None])  # warm-up
            for _ in range(repeats):
                for img in imgs:
                    t0 = time.perf_counter()
                    padded, valid = letterbox(img, size)
                    x = to_tensor(padded)[None]
                    t1 = time.perf_counter()
                    out = model(x)
                    t2 = time.perf_counter()
                    classifier_s[0] = 0.0
                    res = {k: v.cpu().numpy() for k, v in model.postprocess(out, 0, valid, img.shape[:2]).items()}
                    t3 = time.perf_counter()
                    times["forward"].append(t2 - t1)
                    times["post"].append(t3 - t2)
                    times["classifier"].append(classifier_s[0])
                    times["total"].append(t3 - t0)
                    kept.append(len(res["scores"]))
        row = {"size": size, "threads": threads, "flip_tta": tta, "threshold": round(used, 4),
               "images": len(imgs), "samples": len(times["total"]), "masks_kept": round(float(np.mean(kept)), 1)}
        for part, values in times.items():
            row[f"{part}_ms"] = round(1000 * statistics.median(values), 1)
            row[f"{part}_ms_min"] = round(1000 * min(values), 1)
        row["total_over_forward"] = round(row["total_ms"] / row["forward_ms"], 2)
        # the same ratio with the second-look classifier's CNN counted as network (the rest of
        # post-processing against both networks)
        row["total_over_networks"] = round(row["total_ms"] / (row["forward_ms"] + row["classifier_ms"]), 2)
        rows.append(row)
    return rows


def _time_classifier(model) -> list[float]:  # type: ignore[no-untyped-def]
    """Wraps the second-look classifier's network (its CNN and MLP, inside ``postprocess``) so each
    call adds its seconds to the returned one-element list; the list stays 0 without a classifier."""
    spent = [0.0]
    classifier = getattr(model, "mask_cls", None)
    if classifier is None:
        return spent
    name = "classify" if hasattr(classifier, "classify") else "forward"
    inner = getattr(classifier, name)

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    setattr(classifier, name, timed)
    return spent


def cmd_latency(args: argparse.Namespace) -> int:
    rows = []
    for size in args.sizes:
        for threads in args.threads:
            cmd = [sys.executable, __file__, "_latency_child", "--size", str(size), "--threads", str(threads),
                   "--count", str(args.count), "--repeats", str(args.repeats)]
            for flag, value in (("--checkpoint", args.checkpoint), ("--images", args.images),
                                ("--threshold", args.threshold)):
                if value is not None:
                    cmd += [flag, str(value)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
            for row in json.loads(out.strip().splitlines()[-1]):
                rows.append(row)
                print(json.dumps(row))
    print()
    print("| size | threads | flip TTA | masks kept | forward ms | post-processing ms | of which classifier CNN ms "
          "| total ms | total / forward | total / (forward + classifier CNN) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tta = {True: "on", False: "off", None: "-"}[r["flip_tta"]]
        print(f"| {r['size']}^2 | {r['threads']} | {tta} | {r['masks_kept']} | {r['forward_ms']} ({r['forward_ms_min']}) "
              f"| {r['post_ms']} ({r['post_ms_min']}) | {r['classifier_ms']} ({r['classifier_ms_min']}) "
              f"| {r['total_ms']} ({r['total_ms_min']}) | {r['total_over_forward']} | {r['total_over_networks']} |")
    print(f"median (minimum) of {rows[0]['samples']} images; threshold {rows[0]['threshold']}")
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    import cv2
    import torch

    from blender_instseg.ml.data import letterbox, read_image, to_tensor
    from blender_instseg.ml.predict import run_inference

    torch.set_num_threads(args.threads)
    model, used = _load(args.checkpoint, args.threshold)
    cat_ids = list(range(1, model.cfg.num_classes + 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = _image_paths(args.images, work)
        for size in args.sizes:
            folder = work / f"images{size}"
            folder.mkdir()
            items = []
            for i in range(args.count):  # the folder: --count images of this size (sources reused in turn)
                img = cv2.resize(read_image(sources[i % len(sources)]), (size, size), interpolation=cv2.INTER_LINEAR)
                path = folder / f"{i:05d}.png"
                cv2.imwrite(str(path), img[..., ::-1])
                items.append((i + 1, path))
            x1 = to_tensor(letterbox(read_image(items[0][1]), size)[0])[None]
            for batch_size in args.batch_sizes:
                x = x1.expand(batch_size, -1, -1, -1).contiguous()
                with torch.no_grad():
                    model(x)
                    t0 = time.perf_counter()
                    for _ in range(max(1, args.count // batch_size)):
                        model(x)
                    network = max(1, args.count // batch_size) * batch_size / (time.perf_counter() - t0)
                for workers in args.workers:
                    run_inference(model, items[: 2 * batch_size], cat_ids, size, torch.device("cpu"),
                                  batch_size=batch_size, workers=workers)  # warm-up (and the workers' start)
                    t0 = time.perf_counter()
                    run_inference(model, items, cat_ids, size, torch.device("cpu"), batch_size=batch_size,
                                  workers=workers)
                    rate = len(items) / (time.perf_counter() - t0)
                    row = {"size": size, "threads": args.threads, "batch_size": batch_size, "workers": workers,
                           "images": len(items), "images_per_s": round(rate, 2), "network_images_per_s": round(network, 2),
                           "threshold": round(used, 4)}
                    rows.append(row)
                    print(json.dumps(row))
    print()
    print("| size | --batch-size | --workers | images/s, whole predict | images/s, network alone |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}^2 | {r['batch_size']} | {r['workers']} | {r['images_per_s']} | {r['network_images_per_s']} |")
    print(f"{args.threads} threads, {rows[0]['images']} images per run, threshold {rows[0]['threshold']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", help="a trained checkpoint (default: an untrained SOLOv2-lite)")
    common.add_argument("--images", help="images (folder or annotations JSON; default: drawn shapes), resized to each size")
    common.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    common.add_argument("--threshold", type=float, help="score threshold (default: predict's default for the checkpoint)")
    lat = sub.add_parser("latency", parents=[common], help="forward / post-processing / total per image")
    lat.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    lat.add_argument("--count", type=int, default=20, help="images (default 20)")
    lat.add_argument("--repeats", type=int, default=5, help="passes over the images (default 5)")
    child = sub.add_parser("_latency_child", parents=[common])
    child.add_argument("--size", type=int, required=True)
    child.add_argument("--threads", type=int, required=True)
    child.add_argument("--count", type=int, default=20)
    child.add_argument("--repeats", type=int, default=5)
    thr = sub.add_parser("throughput", parents=[common], help="images/s of run_inference over a folder")
    thr.add_argument("--threads", type=int, default=2)
    thr.add_argument("--count", type=int, default=64, help="images in the folder (default 64)")
    thr.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    thr.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    args = p.parse_args(argv)
    if args.mode == "_latency_child":
        print(json.dumps(latency_child(args.size, args.threads, args.checkpoint, args.images, args.count, args.repeats,
                                       args.threshold)))
        return 0
    if args.mode == "throughput":
        return cmd_throughput(args)
    if args.mode is None:
        args = p.parse_args(["latency", "--repeats", "2"])
    return cmd_latency(args)


if __name__ == "__main__":
    sys.exit(main())
