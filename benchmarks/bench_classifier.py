"""SOLOv2-lite's RoI mask classifier trained alone on ground-truth object crops: accuracy per design.

Why: in the full model the classifier names ~78 % of found objects right, and class-aware mask AP
sits at ~0.85x the class-agnostic one, so its accuracy bounds the model's AP. A full training run
takes 15 minutes per design; here the same network (``RoIMaskClassifier.classify``) trains on the
crops the data set's crop bank cuts (``layers.object_crops.object_crops``: exact GT masks, flipped
left-right at random) in a minute or two, so designs can be compared on held-out crops before one
is tried in the full model. Absolute numbers are optimistic (held-out crops use exact GT masks, the
model sees predicted ones); the ranking is what this is for.

    python benchmarks/bench_classifier.py --data out/bench_gen --crops 300000 \
        --set "width=16,size=24" "width=32,size=24"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_instseg.ml.data import CocoSource, decode_to_size, read_image, resolve_dataset, to_tensor  # noqa: E402
from blender_instseg.ml.models.mask_classifiers import RoIMaskClassifier  # noqa: E402
from blender_instseg.ml.models.solov2 import normalise_pixels  # noqa: E402
from blender_instseg.ml.layers.object_crops import object_crops, shuffle_channels  # noqa: E402

DEFAULT_DATA = "out/bench_gen"
GENERATE = ("python scripts/generate.py --out out/bench_gen --num-images 700 --seed 100 --resolution 256 "
            "--samples 16 --min-objects 5 --max-objects 20 --val-fraction 0.143")
DEFAULTS = {"width": 16, "size": 24, "stages": 2, "hidden": 128, "lr": 2e-3, "batch": 256, "permute": 0,
            "wd": 0.01}


def cut_crops(src: CocoSource, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every non-crowd object of a data set as a uint8 crop (N, 4, size, size), its class index and
    its mask area in pixels."""
    cat_index = {cid: i for i, cid in enumerate(src.category_ids)}
    crops, labels, areas = [], [], []
    for rec in src.records:
        anns = [a for a in rec.anns if not a.get("iscrowd", 0)]
        if not anns:
            continue
        img = read_image(rec.path)
        h, w = img.shape[:2]
        masks = torch.from_numpy(np.stack([decode_to_size(a["segmentation"], h, w) for a in anns]))
        crops.append(object_crops(to_tensor(img), masks, size).mul_(255).round_().to(torch.uint8))
        labels += [cat_index[int(a["category_id"])] for a in anns]
        areas.append(masks.flatten(1).sum(1))
    return torch.cat(crops), torch.tensor(labels), torch.cat(areas)


def normalised(x: torch.Tensor) -> torch.Tensor:
    """Float crops in [0, 1] -> the classifier's input (pixels normalised as the model does)."""
    x = x.clone()
    x[:, :3] = normalise_pixels(x[:, :3])
    return x


def run_variant(settings: dict, train: tuple[torch.Tensor, ...], val: tuple[torch.Tensor, ...],
                num_classes: int, total_crops: int, seed: int) -> dict:
    torch.manual_seed(seed)
    net = RoIMaskClassifier(0, int(settings["hidden"]), num_classes, int(settings["size"]), int(settings["width"]),
                            stages=int(settings["stages"]))
    opt = torch.optim.AdamW(net.parameters(), lr=settings["lr"], weight_decay=settings["wd"])
    batch = int(settings["batch"])
    steps = max(1, total_crops // batch)
    x_all, y_all = train[:2]
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    net.train()
    for step in range(steps):
        lr = settings["lr"] * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / steps)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = torch.randint(len(x_all), (batch,), generator=g)
        x = x_all[idx].float().div_(255)
        flip = torch.rand(batch, generator=g) < 0.5
        x[flip] = x[flip].flip(-1)
        if settings["permute"]:
            x[:, :3] = shuffle_channels(x[:, :3], g)
        loss = F.cross_entropy(net.classify(normalised(x)), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net.classify(normalised(c.float() / 255)).argmax(1) for c in val[0].split(1024)])
        flip_pred = torch.cat([net.classify(normalised(c.float() / 255), flip_tta=True).argmax(1)
                               for c in val[0].split(1024)])
        seen = torch.cat([net.classify(normalised(c.float() / 255)).argmax(1) for c in x_all[:len(val[0])].split(1024)])
    right = pred == val[1]
    per_class = [float(right[val[1] == c].float().mean()) for c in range(num_classes)]
    small = val[2] < 32 ** 2  # COCO's small objects
    return {"settings": settings, "params": sum(p.numel() for p in net.parameters()), "steps": steps,
            "train_s": round(train_s, 1), "ms_per_1k_crops": round(1000 * train_s / (steps * batch) * 1000, 1),
            "val_accuracy": round(float(right.float().mean()), 4),
            "val_accuracy_small": round(float(right[small].float().mean()), 4),
            "val_accuracy_medium_large": round(float(right[~small].float().mean()), 4),
            "val_accuracy_flip_tta": round(float((flip_pred == val[1]).float().mean()), 4),
            "train_accuracy": round(float((seen == y_all[:len(seen)]).float().mean()), 4), "per_class": [round(a, 3) for a in per_class]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help=f"dataset folder with annotations_train.json + annotations_val.json "
                                   f"(default {DEFAULT_DATA}, the model benchmark's set)")
    ap.add_argument("--crops", type=int, default=300_000, help="training crops per variant (a 1500-step run's bank sees ~290 k)")
    ap.add_argument("--set", nargs="+", default=[""], metavar="K=V,...",
                    help=f"one variant per argument; keys {sorted(DEFAULTS)} (defaults {DEFAULTS})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.data is None:
        if not Path(DEFAULT_DATA).is_dir():  # `make bench` runs every benchmark without arguments
            print(f"skipped: no dataset at {DEFAULT_DATA}; make it with: {GENERATE}")
            return 0
        args.data = DEFAULT_DATA
    elif not Path(args.data).exists():
        ap.error(f"dataset not found: {args.data}")
    if args.threads:
        torch.set_num_threads(args.threads)
    train_src, val_src = resolve_dataset(args.data)
    if val_src is None:
        ap.error(f"{args.data} has no validation split (annotations_val.json)")
    num_classes = len(train_src.category_ids)
    cache: dict[int, tuple] = {}
    for spec in args.set:
        settings = dict(DEFAULTS)
        for kv in filter(None, spec.split(",")):
            k, v = kv.split("=", 1)
            if k not in DEFAULTS:
                ap.error(f"unknown key {k!r}; known: {sorted(DEFAULTS)}")
            settings[k] = float(v)
        size = int(settings["size"])
        if size not in cache:
            cache[size] = (cut_crops(train_src, size), cut_crops(val_src, size))
        train, val = cache[size]
        res = run_variant(settings, train, val, num_classes, args.crops, args.seed)
        res["train_objects"], res["val_objects"] = len(train[1]), len(val[1])
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
