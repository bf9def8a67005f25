"""Benchmarks of the bundled model: size, CPU inference latency, peak memory, and AP-vs-training-minutes.

Modes (each prints plain numbers; results go in docs/benchmarks.md, section "Model"):

  latency  params and median per-image latency (forward + post-processing, with and without the point
           head's subdivision) at 256^2 and 512^2, plus peak RSS, each size in a fresh child process.
           Post-processing cost depends on how many masks survive, so it is measured twice: at predict's
           default threshold ("typical": the checkpoint's validated best-F1 one, else 0.3, or
           --threshold) and at 0 ("worst": 100 masks kept and refined).
  curve    for each --eval-at budget M, train on --data for M minutes (``--schedule separate``, default:
           one fresh run per budget, as ``train --minutes M`` would; or ``single``: snapshots of one run),
           evaluate with ``python -m blender_instseg.ml evaluate`` (mask AP, AP50, Boundary AP) and
           write curve.json + learning_curve.png to --out. ``--variants point nopoint`` measures the
           point head.
  agnostic mask AP with and without categories on one predictions file (is the category branch
           the bottleneck?).
  inference one trained checkpoint scored (mask AP, AP50, AP75 on --data's held-out images) under
           inference settings given as model-config overrides, one run per --set (e.g. the class
           decision's ``mask_cls_grid_weight=0``, thresholds ``update_thr=0.05``); "" = as saved.
           ``--live-weights``: the run's live weights instead of their moving average.
  classifier-gap  a SOLOv2 checkpoint's mask classifier: accuracy from GT masks vs from the best
           predicted mask of the same objects (does what it learned on GT masks transfer?).
  step-time ms per training step by part (data, forward, loss, backward, optimizer, weight average) for
           each --set of model-config overrides: where the CPU-minutes of the AP-per-minute benchmark go
           (``--profile``: the top ops; ``--channels-last``: that memory format).
  zoo      every architecture of the model zoo trained --minutes on the same data, then the table
           for docs/: mask AP, AP50, Boundary AP, AP on heavily occluded objects (visible_fraction
           < 0.5), CPU latency at 256^2 and 512^2 (predict's default threshold), parameters.

  python benchmarks/bench_model.py latency [--checkpoint last.pt] [--images DIR_OR_JSON]
  python benchmarks/bench_model.py curve --data DATASET --eval-at 5 10 15 --out out/bench_model
  python benchmarks/bench_model.py zoo --data DATASET --minutes 15 --out out/bench_zoo
  python benchmarks/bench_model.py inference --checkpoint last.pt --data DATASET --set "" mask_cls_grid_weight=0
  python benchmarks/bench_model.py classifier-gap --checkpoint last.pt --data DATASET
  python benchmarks/bench_model.py step-time --data DATASET --set "" mask_classifier=false
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def latency_child(size: int, checkpoint: str | None, images: str | None, repeats: int, worst: bool,
                  threshold: float | None = None) -> dict:
    """Runs in its own process so ru_maxrss is this size's peak only."""
    import numpy as np
    import torch

    from blender_instseg.ml.data import list_images, load_coco_source, read_image
    from blender_instseg.ml.device import set_threads
    from blender_instseg.ml.models import Solov2Config, build_model
    from blender_instseg.ml.predict import apply_score_threshold, predict_image, resolve_score_threshold
    from blender_instseg.ml.checkpoint import load_model

    threads = set_threads()
    if checkpoint:
        model, ckpt = load_model(checkpoint)
    else:
        torch.manual_seed(0)
        model, ckpt = build_model(Solov2Config(num_classes=8)).eval(), {}
    typical = resolve_score_threshold(threshold, ckpt)[0]  # what predict uses by default
    apply_score_threshold(model, 0.0 if worst else typical)
    if images:
        paths = ([r.path for r in load_coco_source(images).records] if images.endswith(".json")
                 else list_images([images]))[:repeats]
        imgs = [read_image(p) for p in paths]
    else:
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(repeats)]
    import cv2

    imgs = [cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR) for im in imgs]
    dev = torch.device("cpu")
    res = {"size": size, "threads": threads, "worst_case": worst, "threshold": 0.0 if worst else typical,
           "params": sum(p.numel() for p in model.parameters())}
    for refine in (False, True):
        if refine and getattr(model, "point_head", None) is None:
            continue
        predict_image(model, imgs[0], size, dev, refine=refine)  # warm-up
        times, kept = [], []
        for i in range(repeats):
            t0 = time.perf_counter()
            pred = predict_image(model, imgs[i % len(imgs)], size, dev, refine=refine)
            times.append(time.perf_counter() - t0)
            kept.append(len(pred["masks"]))
        key = "point_head" if refine else "bilinear"
        res[f"ms_{key}"] = round(1000 * statistics.median(times), 1)
        res[f"ms_{key}_min"] = round(1000 * min(times), 1)
        res[f"masks_{key}"] = round(float(np.mean(kept)), 1)
    with torch.no_grad():
        x = torch.rand(1, 3, size, size)
        model(x)
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            t.append(time.perf_counter() - t0)
    res["ms_forward_only"] = round(1000 * statistics.median(t), 1)
    res["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return res


def cmd_latency(args: argparse.Namespace) -> int:
    rows = []
    for worst in (False, True):
        for size in args.sizes:
            cmd = [sys.executable, __file__, "_latency_child", "--size", str(size), "--repeats", str(args.repeats)]
            if args.checkpoint:
                cmd += ["--checkpoint", args.checkpoint]
            if args.images:
                cmd += ["--images", args.images]
            if worst:
                cmd.append("--worst")
            elif args.threshold is not None:
                cmd += ["--threshold", str(args.threshold)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
            print(json.dumps(rows[-1]))
    print()
    print("| size | case | masks kept | forward only ms | whole predict_image, bilinear ms | whole predict_image, point head ms | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        case = "worst" if r["worst_case"] else "typical"
        print(f"| {r['size']}^2 | {case} (threshold {r['threshold']:.3g}) | {r.get('masks_point_head', r.get('masks_bilinear'))} "
              f"| {r['ms_forward_only']} | {r['ms_bilinear']} | {r.get('ms_point_head', '-')} | {r['peak_rss_mb']} |")
    print(f"params: {rows[0]['params']}, threads: {rows[0]['threads']}")
    return 0


def _run_json(cmd: list[str], log_path: Path) -> int:
    with open(log_path, "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode


def _evaluate(args: argparse.Namespace, ckpt: Path, rep: Path, log: Path) -> dict | None:
    ecmd = [sys.executable, "-m", "blender_instseg.ml", "evaluate", "--checkpoint", str(ckpt), "--data",
            args.eval_data or args.data, "--out", str(rep), "--device", args.device]
    if _run_json(ecmd, log):
        print(f"evaluation of {ckpt} failed; see {log}")
        return None
    m = json.loads((rep / "metrics.json").read_text())
    return {"mask_AP": m["segm"]["AP"], "mask_AP50": m["segm"]["AP50"], "boundary_AP": m["boundary"]["AP"],
            "mean_boundary_iou": m["boundary"].get("mean_boundary_iou")}


def _zoo() -> dict[str, list[str]]:
    """Zoo entries: name in the table -> train flags choosing the network (every registered model,
    plus SOLOv2 with its point head and without its mask classifier, which measure those)."""
    from blender_instseg.ml.models import ARCHITECTURES

    entries = {name: ["--model", name] for name in ARCHITECTURES}
    entries["solov2-point"] = ["--model", "solov2", "--point-head"]
    entries["solov2-nomaskcls"] = ["--model", "solov2", "--model-config", "mask_classifier=false"]
    return entries


ZOO = _zoo()


def _train(args: argparse.Namespace, variant: str, run_dir: Path, minutes: float, save_at: list[float], log: Path) -> int:
    """``variant``: "point"/"nopoint" (the curve's SOLOv2 variants) or a ``ZOO`` name."""
    net = ZOO.get(variant) or ["--no-point-head" if variant == "nopoint" else "--point-head"]
    cmd = [sys.executable, "-m", "blender_instseg.ml", "train", "--data", args.data, "--out", str(run_dir),
           "--minutes", str(minutes), "--batch-size", str(args.batch_size), "--image-size", str(args.image_size),
           "--checkpoint-every", "500", *net, "--device", args.device, "--seed", str(args.seed)]
    if save_at:
        cmd += ["--save-minutes", *[str(m) for m in save_at]]
    if args.val_fraction:
        cmd += ["--val-fraction", str(args.val_fraction)]
    if (run_dir / "last.pt").exists():
        cmd.append("--resume")
    else:
        cmd += ["--init", "none"]  # the model's own learning curve: from random weights
    t0 = time.perf_counter()
    rc = _run_json(cmd, log)
    print(f"[{variant}] trained {minutes:g} min (wall {time.perf_counter() - t0:.0f} s), rc={rc}", flush=True)
    return rc


def cmd_curve(args: argparse.Namespace) -> int:
    """One point per (variant, minutes). ``separate``: a fresh run per budget, each with its own full
    LR schedule (what a user gets from ``train --minutes M``; costs the sum of the budgets).
    ``single``: one run of the largest budget, evaluated at snapshots (cheaper, but early snapshots
    are mid-schedule and underestimate what a run of that length would reach)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curve: dict[str, list[dict]] = {}
    for variant in args.variants:
        points = []
        if args.schedule == "single":
            run_dir = out / f"run-{variant}"
            if not args.evaluate_only and _train(args, variant, run_dir, max(args.eval_at), list(args.eval_at),
                                                 out / f"train-{variant}.log"):
                return 1
            ckpts = [(m, run_dir / f"minute-{m:06.2f}.pt") for m in args.eval_at]
        else:
            ckpts = []
            for m in args.eval_at:
                run_dir = out / f"run-{variant}-{m:g}min"
                if not args.evaluate_only and _train(args, variant, run_dir, m, [], out / f"train-{variant}-{m:g}min.log"):
                    return 1
                ckpts.append((m, run_dir / "last.pt"))
        for minute, ckpt in ckpts:
            if not ckpt.exists():
                print(f"[{variant}] no checkpoint at {minute} min")
                continue
            row = _evaluate(args, ckpt, out / f"eval-{variant}-{minute:g}min", out / f"eval-{variant}-{minute:g}.log")
            if row is None:
                continue
            row = {"minutes": minute, **row}
            points.append(row)
            print(f"[{variant}] {minute:>5g} min: mask AP {row['mask_AP']:.3f}  AP50 {row['mask_AP50']:.3f}  "
                  f"Boundary AP {row['boundary_AP']:.3f}", flush=True)
        curve[variant] = points
    from blender_instseg.core.fileio import atomic_write_json

    atomic_write_json(out / "curve.json", curve, indent=2)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for variant, pts in curve.items():
            xs = [p["minutes"] for p in pts]
            ax.plot(xs, [p["mask_AP"] for p in pts], "o-", label=f"mask AP ({variant})")
            ax.plot(xs, [p["mask_AP50"] for p in pts], "s--", label=f"AP50 ({variant})")
            ax.plot(xs, [p["boundary_AP"] for p in pts], "^:", label=f"Boundary AP ({variant})")
        ax.set_xlabel("training minutes")
        ax.set_ylabel("AP")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        data = Path(args.data)
        ax.set_title(f"SOLOv2-lite on {data.parent.name if data.suffix == '.json' else data.name}")
        fig.tight_layout()
        fig.savefig(out / "learning_curve.png", dpi=120)
        print(f"wrote {out / 'learning_curve.png'}")
    except ImportError:
        print("matplotlib missing: no PNG")
    return 0


def _heavy_occlusion_ap(gt_path: Path, preds_path: Path, below: float = 0.5) -> float | None:
    """Mask AP on ground truth with visible_fraction < ``below`` (the rest ignored, as core.evaluation.metrics' buckets)."""
    from blender_instseg.core.evaluation import metrics as M
    from blender_instseg.core.evaluation.inputs import load_ground_truth, load_predictions

    gt, _ = load_ground_truth(gt_path)
    dt = load_predictions(preds_path, gt)
    occ = M.compute_metrics(gt, dt, occlusion_edges=(0.0, below, 1.0)).metrics["by_occlusion"]["buckets"]
    return occ[0]["AP"] if occ else None


def _last_step(run_dir: Path) -> int | None:
    try:
        lines = (run_dir / "events.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        ev = json.loads(line)
        if ev.get("event") == "done":
            return ev.get("step")
    return None


def cmd_zoo(args: argparse.Namespace) -> int:
    """Every model on the same data and training budget: AP, Boundary AP, AP under heavy occlusion,
    latency at 256^2/512^2, parameters. Writes zoo.json and prints the Markdown table for docs/."""
    from blender_instseg.ml.evaluate_cmd import pick_annotations

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gt_path = pick_annotations(args.eval_data or args.data, None)
    rows = []
    for name in args.models:
        run_dir = out / f"run-{name}"
        if not (run_dir / "last.pt").exists() or _last_step(run_dir) is None:
            if _train(args, name, run_dir, args.minutes, [], out / f"train-{name}.log"):
                return 1
        rep = out / f"eval-{name}"
        row = _evaluate(args, run_dir / "last.pt", rep, out / f"eval-{name}.log")
        if row is None:
            return 1
        row = {"model": name, "minutes": args.minutes, "steps": _last_step(run_dir), **row,
               "AP_visible_below_0.5": _heavy_occlusion_ap(gt_path, rep / "predictions.json")}
        for size in (256, 512):
            cmd = [sys.executable, __file__, "_latency_child", "--size", str(size), "--repeats", str(args.repeats),
                   "--checkpoint", str(run_dir / "last.pt"), "--images", str(gt_path)]
            lat = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            row["params"] = lat["params"]
            row[f"ms_{size}"] = lat.get("ms_point_head", lat["ms_bilinear"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    from blender_instseg.core.fileio import atomic_write_json

    atomic_write_json(out / "zoo.json", rows, indent=2)
    print()
    print("| model | params | train min (steps) | mask AP | AP50 | Boundary AP | AP, visible < 0.5 | ms 256^2 | ms 512^2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        occ = r["AP_visible_below_0.5"]
        print(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['minutes']:g} ({r['steps']}) | {r['mask_AP']:.3f} "
              f"| {r['mask_AP50']:.3f} | {r['boundary_AP']:.3f} | {'n/a' if occ is None or occ < 0 else f'{occ:.3f}'} "
              f"| {r['ms_256']} | {r['ms_512']} |")
    return 0


def cmd_agnostic(args: argparse.Namespace) -> int:
    """Mask AP with and without categories (pycocotools ``useCats`` 1 / 0) on one predictions file: a
    large gap means the masks are found but the classes are wrong (the category branch is the
    bottleneck), a small one that segmentation itself is."""
    from pycocotools.cocoeval import COCOeval

    from blender_instseg.core.evaluation.inputs import load_ground_truth, load_predictions, quiet

    gt, _ = load_ground_truth(args.gt)
    dt = load_predictions(args.pred, gt)
    for use_cats in (1, 0):
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.useCats = use_cats
        with quiet():
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        print(f"{'with categories' if use_cats else 'class-agnostic '}: AP {ev.stats[0]:.3f}  AP50 {ev.stats[1]:.3f}  "
              f"APs {ev.stats[3]:.3f}  APm {ev.stats[4]:.3f}  APl {ev.stats[5]:.3f}  AR100 {ev.stats[8]:.3f}")
    found, right = _first_class_hits(gt, dt)
    n_gt = len(gt.getAnnIds(iscrowd=False))
    print(f"found (a detection with mask IoU >= 0.5): {found} of {n_gt} objects; the highest-scoring such "
          f"detection has the right class for {right} ({right / max(found, 1):.0%})")
    return 0


def cmd_inference(args: argparse.Namespace) -> int:
    """Mask AP of one checkpoint under several inference settings, to choose post-processing defaults
    without retraining. Each ``--set`` is applied to the checkpoint's own config (the training
    weights are untouched)."""
    import dataclasses

    import torch

    from blender_instseg.ml.checkpoint import load_model
    from blender_instseg.ml.data import load_coco_source
    from blender_instseg.ml.device import set_threads
    from blender_instseg.ml.evaluate_cmd import pick_annotations
    from blender_instseg.ml.quick_eval import mask_ap
    from blender_instseg.ml.train import parse_overrides

    set_threads()
    model, ckpt = load_model(args.checkpoint, torch.device("cpu"))
    if args.live_weights:
        if "train_weights" not in ckpt:
            print("this checkpoint keeps no moving average: its model weights are the live ones")
            return 2
        model.load_state_dict(ckpt["train_weights"])
    saved = dataclasses.replace(model.cfg)
    src = load_coco_source(pick_annotations(args.data, None))
    size = int(ckpt.get("train_config", {}).get("image_size", 256))
    for text in args.set:
        model.cfg = dataclasses.replace(saved, **(parse_overrides(text, type(saved)) if text else {}))
        t0 = time.perf_counter()
        m = mask_ap(model, src, size, torch.device("cpu"), refine=False if args.no_refine else None)
        print(f"{text or '(as saved)':40s} mask AP {m['mask_AP']:.3f}  AP50 {m['mask_AP50']:.3f}  "
              f"AP75 {m['mask_AP75']:.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


def cmd_step_time(args: argparse.Namespace) -> int:
    """Milliseconds per training step of the default model, by part, for each --set: where a
    CPU-minute goes (the AP-per-minute benchmark is steps x what each step teaches). Each variant
    builds the Trainer of ``train`` on --data, runs --warmup steps, then times --steps steps of
    batch 4. Data time of the first epoch includes cutting crop-bank crops (cached after that)."""
    import tempfile

    import torch

    from blender_instseg.ml.data import collate
    from blender_instseg.ml.device import autocast, set_threads
    from blender_instseg.ml.train import Trainer, parse_overrides
    from blender_instseg.ml.train_config import TrainConfig

    set_threads()
    for text in args.set:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(TrainConfig(data=args.data, out=tmp, steps=1, batch_size=args.batch_size,
                                          precision=args.precision),
                              model_overrides=parse_overrides(text) if text else None, device="cpu")
            model, optim, ds = trainer.model.train(), trainer.optim, trainer.dataset
            precision = trainer.precision
            if args.channels_last:
                model.to(memory_format=torch.channels_last)
            parts = dict.fromkeys(("data", "features", "loss", "backward", "optimizer", "ema"), 0.0)
            profiler = None
            for step in range(args.warmup + args.steps):
                if args.profile and step == args.warmup:
                    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                    profiler.__enter__()
                keys = [((step * args.batch_size + i) % len(ds), 0) for i in range(args.batch_size)]
                t = [time.perf_counter()]
                images, targets = collate([ds[k] for k in keys])
                if args.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                t.append(time.perf_counter())
                with autocast(precision, trainer.device):  # as Trainer.run
                    out = model.features(images)
                    t.append(time.perf_counter())
                    loss = sum(v.float() for v in model.loss(out, targets).values())
                t.append(time.perf_counter())
                optim.zero_grad(set_to_none=True)
                loss.backward()
                t.append(time.perf_counter())
                torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.cfg.grad_clip)  # as Trainer.run
                optim.step()
                t.append(time.perf_counter())
                if trainer.ema is not None:  # as Trainer.run
                    trainer.ema.update(model, step + 1)
                t.append(time.perf_counter())
                if step >= args.warmup:
                    for k, a, b in zip(parts, t, t[1:]):
                        parts[k] += (b - a) / args.steps
        total = sum(parts.values())
        label = f"{text or '(default)'} {precision}"
        print(f"{label:40s} " + "  ".join(f"{k} {1000 * v:.1f}" for k, v in parts.items())
              + f"  total {1000 * total:.0f} ms/step ({60 / total:.0f} steps/min)", flush=True)
        if profiler is not None:
            profiler.__exit__(None, None, None)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), flush=True)
    return 0


def cmd_classifier_gap(args: argparse.Namespace) -> int:
    """How often a SOLOv2 checkpoint's mask classifier names held-out objects right from their GT mask
    (soft stride-4, as the crop bank trains it, and binarised) and from the best predicted mask of the
    same object (the candidate cell whose stride-4 mask overlaps it most, IoU >= 0.5; soft, as
    inference feeds it, and binarised). The gap between the first and the third is what training on
    GT masks alone fails to teach."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from blender_instseg.ml.checkpoint import load_model
    from blender_instseg.ml.data import decode_to_size, letterbox, load_coco_source, read_image, to_tensor
    from blender_instseg.ml.device import set_threads
    from blender_instseg.ml.evaluate_cmd import pick_annotations
    from blender_instseg.ml.models.solov2 import mask_iou_pairs

    set_threads()
    model, ckpt = load_model(args.checkpoint, torch.device("cpu"))
    if getattr(model, "mask_cls", None) is None:
        print("this checkpoint has no mask classifier")
        return 2
    src = load_coco_source(pick_annotations(args.data, None))
    label_of = {cid: i for i, cid in enumerate(src.category_ids)}
    size = int(ckpt.get("train_config", {}).get("image_size", 256))
    tta = bool(getattr(model.cfg, "mask_cls_flip_tta", False))
    right = {"GT mask": 0, "GT mask, binarised": 0, "predicted mask": 0, "predicted mask, binarised": 0}
    found = 0
    with torch.no_grad():
        for rec in src.records[: args.images]:
            anns = [a for a in rec.anns if not a.get("iscrowd", 0)]
            img = read_image(rec.path)
            h, w = img.shape[:2]
            padded, _ = letterbox(img, size)
            if not anns or padded.shape[:2] != (h, w):  # GT masks must line up with the input unscaled
                continue
            out = model(to_tensor(padded)[None])
            gt = torch.from_numpy(np.stack([decode_to_size(a["segmentation"], h, w) for a in anns])).float()
            gt_s4 = F.avg_pool2d(gt[None], 4)[0]
            labels = torch.tensor([label_of[int(a["category_id"])] for a in anns])
            cells = torch.arange(out["cate"].shape[1])
            probs = torch.sigmoid(model.mask_logits(out, 0, cells))
            iou = torch.stack([mask_iou_pairs((probs > 0.5), (g > 0.5).expand_as(probs)) for g in gt_s4])
            best_iou, best = iou.max(1)
            ok = best_iou >= 0.5
            found += int(ok.sum())
            for name, masks in (("GT mask", gt_s4), ("GT mask, binarised", (gt_s4 > 0.5).float()),
                                ("predicted mask", probs[best]), ("predicted mask, binarised", (probs[best] > 0.5).float())):
                named = model.classify_masks(out, 0, masks, flip_tta=tta).argmax(1)
                right[name] += int(((named == labels) & ok).sum())
    print(f"{found} objects with a predicted mask of stride-4 IoU >= 0.5 (first {args.images} images, flip TTA {tta})")
    for name, n in right.items():
        print(f"classifier right from the {name:26s} {n / max(found, 1):.3f}")
    return 0


def _first_class_hits(gt, dt) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(objects with any detection of mask IoU >= 0.5, objects whose highest-scoring such detection
    has their category): how often the model names what it finds correctly."""
    import numpy as np
    from pycocotools import mask as mask_utils

    found = right = 0
    for img_id in gt.getImgIds():
        gts = gt.loadAnns(gt.getAnnIds(imgIds=img_id, iscrowd=False))
        dts = sorted(dt.loadAnns(dt.getAnnIds(imgIds=img_id)), key=lambda d: -d["score"])
        if not gts or not dts:
            continue
        ious = mask_utils.iou([d["segmentation"] for d in dts], [gt.annToRLE(g) for g in gts], [0] * len(gts))
        hit = np.asarray(ious) >= 0.5
        for j, g in enumerate(gts):
            first = np.flatnonzero(hit[:, j])
            if len(first):
                found += 1
                right += dts[first[0]]["category_id"] == g["category_id"]
    return found, right


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode")
    lat = sub.add_parser("latency", help="params, CPU latency and peak memory at 256^2 and 512^2")
    lat.add_argument("--checkpoint", help="a trained checkpoint (default: an untrained model with 8 classes)")
    lat.add_argument("--images", help="images (folder or annotations JSON) to time on (default: random noise)")
    lat.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    lat.add_argument("--repeats", type=int, default=20)
    lat.add_argument("--threshold", type=float, help="typical case's score threshold (default: predict's default)")
    child = sub.add_parser("_latency_child")
    child.add_argument("--size", type=int, required=True)
    child.add_argument("--checkpoint")
    child.add_argument("--images")
    child.add_argument("--repeats", type=int, default=20)
    child.add_argument("--worst", action="store_true")
    child.add_argument("--threshold", type=float)
    cur = sub.add_parser("curve", help="AP vs training minutes on a dataset, plus learning_curve.png")
    cur.add_argument("--data", required=True, help="dataset folder or annotations JSON for training")
    cur.add_argument("--eval-data", help="dataset/JSON to evaluate on (default: --data; uses its annotations_val.json)")
    cur.add_argument("--eval-at", type=float, nargs="+", default=[5, 10, 15])
    cur.add_argument("--variants", nargs="+", choices=["point", "nopoint"], default=["point"])
    cur.add_argument("--batch-size", type=int, default=4)
    cur.add_argument("--image-size", type=int, default=256)
    cur.add_argument("--val-fraction", type=float, default=0.0)
    cur.add_argument("--device", default="auto")
    cur.add_argument("--seed", type=int, default=0)
    cur.add_argument("--schedule", choices=["separate", "single"], default="separate",
                     help="separate: one full run per --eval-at budget (default); single: snapshots of one run")
    cur.add_argument("--out", default="out/bench_model")
    cur.add_argument("--evaluate-only", action="store_true",
                     help="score the runs already in --out again (e.g. after an inference change); no training")
    zoo = sub.add_parser("zoo", help="every model on the same data and budget: AP, Boundary AP, occluded AP, latency")
    zoo.add_argument("--data", required=True, help="dataset folder or annotations JSON for training")
    zoo.add_argument("--eval-data", help="dataset/JSON to evaluate on (default: --data; uses its annotations_val.json)")
    zoo.add_argument("--models", nargs="+", choices=list(ZOO), default=list(ZOO))
    zoo.add_argument("--minutes", type=float, default=15.0, help="training minutes per model (default 15)")
    zoo.add_argument("--batch-size", type=int, default=4)
    zoo.add_argument("--image-size", type=int, default=256)
    zoo.add_argument("--val-fraction", type=float, default=0.0)
    zoo.add_argument("--device", default="auto")
    zoo.add_argument("--seed", type=int, default=0)
    zoo.add_argument("--repeats", type=int, default=20, help="images timed per latency size")
    zoo.add_argument("--out", default="out/bench_zoo")
    ag = sub.add_parser("agnostic", help="mask AP with and without categories for one predictions file")
    ag.add_argument("--gt", required=True, help="COCO ground truth JSON")
    ag.add_argument("--pred", required=True, help="COCO results JSON (e.g. REPORT_DIR/predictions.json of ml evaluate)")
    inf = sub.add_parser("inference", help="one checkpoint's mask AP under several inference settings")
    inf.add_argument("--checkpoint", required=True)
    inf.add_argument("--data", required=True, help="dataset folder (its annotations_val.json) or annotations JSON")
    inf.add_argument("--set", nargs="+", default=[""], metavar="K=V,...",
                     help='model-config overrides, one evaluation each ("" = the checkpoint\'s own)')
    inf.add_argument("--no-refine", action="store_true", help="skip the point head's subdivision (faster)")
    inf.add_argument("--live-weights", action="store_true",
                     help="score the checkpoint's live weights (train_weights) instead of their moving average")
    gap = sub.add_parser("classifier-gap", help="mask classifier accuracy from GT masks vs predicted masks")
    gap.add_argument("--checkpoint", required=True)
    gap.add_argument("--data", required=True, help="dataset folder (its annotations_val.json) or annotations JSON")
    gap.add_argument("--images", type=int, default=60, help="first N images (default 60)")
    st = sub.add_parser("step-time", help="ms per training step by part (data, forward, loss, backward, optimizer)")
    st.add_argument("--data", required=True, help="dataset folder or annotations JSON for training")
    st.add_argument("--set", nargs="+", default=[""], metavar="K=V,...",
                    help='model-config overrides, one measurement each ("" = the default model)')
    st.add_argument("--steps", type=int, default=30)
    st.add_argument("--warmup", type=int, default=10)
    st.add_argument("--batch-size", type=int, default=4)
    st.add_argument("--channels-last", action="store_true", help="network and batches in the channels-last memory format")
    st.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="as train --precision")
    st.add_argument("--profile", action="store_true", help="also print the torch profiler's top ops of the timed steps")
    args = p.parse_args(argv)
    if args.mode == "step-time":
        return cmd_step_time(args)
    if args.mode == "classifier-gap":
        return cmd_classifier_gap(args)
    if args.mode == "inference":
        return cmd_inference(args)
    if args.mode == "agnostic":
        return cmd_agnostic(args)
    if args.mode == "zoo":
        return cmd_zoo(args)
    if args.mode == "_latency_child":
        print(json.dumps(latency_child(args.size, args.checkpoint, args.images, args.repeats, args.worst, args.threshold)))
        return 0
    if args.mode == "curve":
        return cmd_curve(args)
    if args.mode in (None, "latency"):
        if args.mode is None:
            args = p.parse_args(["latency"])
        return cmd_latency(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
