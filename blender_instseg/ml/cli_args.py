"""argparse definitions of the ml commands, kept free of torch so ``--help`` and the no-torch error work anywhere."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any

from .train_config import DEFAULT_EPOCHS, TrainConfig

#: Model switches: boolean settings of one architecture's config that ``train`` offers as --NAME and
#: --no-NAME (dest NAME; None when neither is given: the architecture's default). The config class
#: lists those it takes in ``train_switches`` (ml/models/base.py); train refuses the flag for others.
#: NAME -> (architecture, help of --NAME, help of --no-NAME)
MODEL_SWITCHES: dict[str, tuple[str, str, str]] = {
    "point_head": ("solov2", "solov2: train the PointRend-style boundary head (pays off only on long runs or a GPU)",
                   "plain SOLOv2 masks, upsampled (default: more steps per CPU minute, higher AP at 15 minutes)"),
}


#: predict --batch-size default: on 2-core CPUs larger batches gained nothing more (docs/benchmarks.md)
PREDICT_BATCH_SIZE = 4

#: --image-size bounds: below 32 there is no feature map left, above 4096 one image alone outgrows memory
IMAGE_SIZE_RANGE = (32, 4096)


def check_image_size(value: int | None, multiple_of: int = 1) -> None:
    """A one-line ValueError unless --image-size is None (the default) or in IMAGE_SIZE_RANGE
    (and a multiple of ``multiple_of``: training needs 32, inference pads itself)."""
    if value is None:
        return
    lo, hi = IMAGE_SIZE_RANGE
    if not lo <= value <= hi:
        raise ValueError(f"--image-size must be in [{lo}, {hi}], got {value}")
    if value % multiple_of:
        raise ValueError(f"--image-size must be a multiple of {multiple_of}, got {value}")


def check_fraction(value: float | None, flag: str, *, closed: bool) -> None:
    """--score-threshold style values: in [0, 1] (``closed``) or [0, 1); NaN never passes."""
    if value is None:
        return
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise ValueError(f"{flag} must be in [0, {'1]' if closed else '1)'}, got {value}")


def _default(name: str) -> Any:
    """``TrainConfig``'s default of a setting: train's defaults are written there only."""
    f = {f.name: f for f in fields(TrainConfig)}[name]
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _shown(value: float) -> str:
    """A default as --help shows it: 20, 0.99, 2e-3."""
    return f"{value:.0e}".replace("e-0", "e-") if 0 < abs(value) < 0.01 else f"{value:g}"


def train(p: argparse.ArgumentParser) -> None:
    # --data and --out are required (checked in __main__) except for ``--model list``
    p.add_argument("--data", help="dataset folder (annotations_train.json/annotations_val.json or "
                   "annotations.json) or an annotations JSON file (required)")
    p.add_argument("--out", metavar="RUN_DIR", help="folder for checkpoints, config.json and events.jsonl (required)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--epochs", type=float, help=f"passes over the training images (default {_shown(DEFAULT_EPOCHS)})")
    stop.add_argument("--minutes", type=float, help="train for this much training time (total, including resumed time)")
    stop.add_argument("--steps", type=int, help="optimizer steps (total, including resumed steps)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from last.pt (exact step count)")
    start.add_argument("--init", metavar="CKPT|bundled|none",
                       help="weights a new run starts from: a checkpoint (its network; a different category list "
                       "gets a fresh category head), 'bundled' (the pretrained class-agnostic weights shipped with "
                       "the add-on), or 'none' (random). Default: bundled when the run uses the default network, "
                       "else none. Fresh optimizer, schedule and step 0")
    p.add_argument("--class-agnostic", action="store_true",
                   help="fold every category into one, 'object': the model learns to find and mask objects of any "
                        "kind (how the bundled weights are trained)")
    p.add_argument("--batch-size", type=int, default=_default("batch_size"),
                   help=f"images per step per process (default {_default('batch_size')})")
    p.add_argument("--image-size", type=int, default=_default("image_size"),
                   help=f"training input size, a multiple of 32 (default {_default('image_size')})")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-fraction", type=float, default=None,
                     help="hold out this fraction of images for evaluation when the dataset has no val split")
    val.add_argument("--val-split", help="use annotations_<NAME>.json as the validation set (default: val if present)")
    for name, (_, on_help, off_help) in MODEL_SWITCHES.items():
        flag = name.replace("_", "-")
        switch = p.add_mutually_exclusive_group()
        switch.add_argument(f"--{flag}", dest=name, action="store_true", default=None, help=on_help)
        switch.add_argument(f"--no-{flag}", dest=name, action="store_false", default=None, help=off_help)
    p.add_argument("--seed", type=int, default=_default("seed"),
                   help=f"seed for init, data order and augmentation (default {_default('seed')})")
    p.add_argument("--lr", type=float, default=_default("lr"),
                   help=f"peak AdamW learning rate (default {_shown(_default('lr'))})")
    p.add_argument("--ema-decay", type=float, default=_default("ema_decay"), metavar="D",
                   help="evaluate, predict and checkpoints use the moving average of the weights with this decay "
                        f"(0: the live weights; default {_shown(_default('ema_decay'))})")
    p.add_argument("--precision", default=_default("precision"), metavar="fp32|bf16",
                   help="training arithmetic: fp32 (default) or bf16 autocast (convolutions in bfloat16, weights "
                        "and losses in fp32; for GPUs with bf16 units). Evaluate and predict run in fp32")
    p.add_argument("--checkpoint-every", type=int, default=_default("checkpoint_every"),
                   help=f"steps between checkpoints (default {_default('checkpoint_every')})")
    p.add_argument("--eval-every", type=int, default=_default("eval_every"),
                   help="steps between val evaluations (default: only at the end)")
    p.add_argument("--save-minutes", type=float, nargs="*", default=_default("save_minutes"), metavar="M",
                   help="also save minute-M.pt when training time reaches M minutes (for learning curves)")
    p.add_argument("--workers", type=int, default=_default("workers"),
                   help=f"data-loader worker processes (default {_default('workers')}: 2-core CPUs)")
    p.add_argument("--model", metavar="NAME", help="architecture of a new run: solov2 (default), yolact, ...; "
                   "'list' (or `python -m blender_instseg.ml models`) prints them. --resume/--init take the checkpoint's")
    p.add_argument("--model-config", default="", metavar="K=V,...",
                   help="settings of the architecture's config, e.g. fpn_channels=96,grids=[40,24,12] (values as JSON)")


def predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a .pt file written by train, a run folder with last.pt, or "
                   "'bundled' (the pretrained weights shipped with the add-on: every object, category 'object')")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="a dataset's annotations JSON, or image files and/or folders of images (required without --serve)")
    p.add_argument("--out", help="predictions JSON to write (COCO results format; required without --serve)")
    p.add_argument("--serve", action="store_true",
                   help="keep the model loaded and answer JSON-line requests on stdin (see ml/predict.py) "
                        "until 'stop' or end of input; for Blender's Predict View")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="drop detections below this score (default: the checkpoint's best-F1 threshold on its "
                        "validation set, else 0.3; use 0.05 or lower for AP evaluation)")
    p.add_argument("--overlays", metavar="DIR", help="also write one overlay PNG per image here")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--image-size", type=int, help="inference size of the longer side (default: the training size)")
    p.add_argument("--no-refine", action="store_true", help="skip the point-head refinement (bilinear upsampling instead)")
    p.add_argument("--gt", metavar="ANNOTATIONS", help="take image ids for raw image files from this COCO file (by path or file name)")
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH_SIZE,
                   help=f"images of one size per forward pass (default {PREDICT_BATCH_SIZE}); the predictions are "
                        "those of single images")
    p.add_argument("--workers", type=int, default=0,
                   help="data-loader processes that decode the next images meanwhile (default 0: none)")


def evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a .pt file written by train, a run folder with last.pt, or "
                   "'bundled' (the pretrained weights shipped with the add-on: every object, category 'object')")
    p.add_argument("--data", required=True, help="dataset folder (uses annotations_val.json, else annotations.json) or a COCO JSON")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for predictions.json, metrics.json, report.md, plots")
    p.add_argument("--split", help="score annotations_<SPLIT>.json of the dataset folder")
    p.add_argument("--score-threshold", type=float, default=0.5, help="threshold for precision/recall/F1 (AP uses all scores)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--image-size", type=int, help="inference size of the longer side (default: the training size)")
    p.add_argument("--no-refine", action="store_true", help="skip the point-head refinement")
    p.add_argument("--no-plots", action="store_true", help="write metrics.json and report.md only")
    p.add_argument("--class-agnostic", action="store_true",
                   help="score every object as one category, 'object' (REPORT_DIR/annotations_object.json): how "
                        "well a class-agnostic checkpoint such as 'bundled' finds the dataset's objects")


def models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per line ({name, summary}) instead of a table")
