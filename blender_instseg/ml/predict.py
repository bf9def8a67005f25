"""``predict``: checkpoint + images -> COCO results JSON (RLE masks), optional overlay PNGs.

Images are either a dataset's annotations JSON (its image ids are used, so the output can be scored
against it) or raw image files/folders (ids 1.. in sorted path order, listed in ``<out>.images.json``
so the Blender side can map results back to files).

``--serve`` keeps the model loaded for Blender's Predict View, so a click pays only for inference,
not for the interpreter, ``import torch`` and the checkpoint load. Protocol (JSON lines):

- after loading, stdout gets ``{"event":"log","message":"ready",...}``; requests sent before that
  wait in the stdin pipe, so a client may write its first request right after starting the process;
- stdin ``{"cmd":"predict","id":K,"image":PATH,"out":PREDS_JSON,"score_threshold":T}`` (threshold
  optional, default ``--score-threshold``) -> PREDS_JSON written atomically (COCO results, image_id
  1, the same entries the one-shot command writes for that image), then
  ``{"event":"result","id":K,"out":PREDS_JSON,"count":N,"ms":M,"width":W,"height":H}``;
- a request that cannot be served (unreadable image, bad JSON, bad threshold) gets
  ``{"event":"error","message":...,"id":K}`` (id null when the line had none) and the server goes on;
- ``stop`` / ``{"cmd":"stop"}`` or end of input -> ``{"event":"done","served":N}``, exit 0. Because
  end of input stops it, the server never outlives a parent that dies without saying goodbye.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple, Sequence

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..core import protocol
from ..core.fileio import atomic_write_bytes, atomic_write_json
from .checkpoint import categories_match, load_model, score_threshold_of
from .cli_args import check_fraction, check_image_size
from .data import (DataError, check_images_readable, letterbox, list_images, load_coco_source, read_image,
                   to_tensor)
from .device import resolve_device
from ..core.cliargs import check_out_file, check_out_folder

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_image(model: torch.nn.Module, img: np.ndarray, image_size: int, device: torch.device,
                  refine: bool | None = None) -> dict[str, np.ndarray]:
    """One RGB uint8 image -> masks (K, H, W) bool, labels (K,) class index, scores (K,), at the image's own size."""
    padded, valid = letterbox(img, image_size)
    return predict_batch(model, to_tensor(padded)[None], [valid], [img.shape[:2]], device, refine)[0]


@torch.no_grad()
def predict_batch(model: torch.nn.Module, x: torch.Tensor, valid_hw: Sequence[tuple[int, int]],
                  out_hw: Sequence[tuple[int, int]], device: torch.device,
                  refine: bool | None = None) -> list[dict[str, np.ndarray]]:
    """Letterboxed images (B, 3, H, W) in [0, 1], all of one padded size -> one prediction per image
    (as ``predict_image``): one forward pass for the batch, then each image's post-processing."""
    # channels-last input: oneDNN's CPU convolutions then run in that layout, a quarter faster on two
    # threads; the weights keep theirs, so a loaded model predicts bit for bit what the trained one did
    out = model(x.to(device, memory_format=torch.channels_last))
    preds = []
    for b in range(len(x)):
        res = model.postprocess(out, b, tuple(valid_hw[b]), tuple(out_hw[b]), refine=refine)
        preds.append({k: v.cpu().numpy() for k, v in res.items()})
    return preds


class LoadedImage(NamedTuple):
    """One image ready for the network (``ImageFiles``): its place in the list, the letterboxed
    tensor, the part of it that holds the image, its own size, and (for overlays) the image."""

    index: int
    tensor: torch.Tensor
    valid_hw: tuple[int, int]
    image_hw: tuple[int, int]
    image: np.ndarray | None


class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded and letterboxed one per item, in data-loader workers with ``--workers``."""

    def __init__(self, paths: Sequence[Path], image_size: int, keep_images: bool = False) -> None:
        self.paths, self.image_size, self.keep_images = list(paths), image_size, keep_images

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> LoadedImage:
        img = read_image(self.paths[i])
        padded, valid = letterbox(img, self.image_size)
        return LoadedImage(i, to_tensor(padded), valid, (int(img.shape[0]), int(img.shape[1])),
                           img if self.keep_images else None)


def _one_item(item: LoadedImage) -> LoadedImage:
    """The data loader's collate function: items come one by one (batches are formed by shape below)."""
    return item


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)  # each worker decodes one image at a time; the main process has the cores


def batches_of_one_shape(items: Iterator[LoadedImage], batch_size: int) -> Iterator[list[LoadedImage]]:
    """Consecutive images, at most ``batch_size``, whose letterboxed tensors have one size.

    Why not pad a batch to its largest image: the network's output depends on the padded size (the
    grid heads resample whole feature maps), so an image predicted in a batch must see exactly the
    input it sees alone. Images of one size (a rendered folder) all batch together.
    """
    batch: list[LoadedImage] = []
    for item in items:
        if batch and (len(batch) == batch_size or item.tensor.shape != batch[0].tensor.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def to_coco_results(image_id: int, pred: dict[str, np.ndarray], category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO results entries (counts as str, so the file is plain JSON and loads with COCO.loadRes)."""
    masks = pred["masks"]
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    boxes = mask_utils.toBbox(rles)
    out = []
    for rle, box, label, score in zip(rles, boxes, pred["labels"], pred["scores"]):
        out.append({"image_id": int(image_id), "category_id": int(category_ids[int(label)]),
                    "score": round(float(score), 5),
                    "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "bbox": [round(float(v), 2) for v in box]})
    return out


def draw_predictions(img: np.ndarray, pred: dict[str, np.ndarray], names: Sequence[str],
                     score_threshold: float) -> np.ndarray:
    """RGB image with each instance scoring >= ``score_threshold`` filled (alpha 0.45), outlined and
    labelled: the ``--overlays`` PNGs. (The panel draws its own: ``blender/ui/overlay.draw_overlay``.)"""
    canvas = img.copy()
    rng = np.random.default_rng(0)
    for mask, label, score in zip(pred["masks"], pred["labels"], pred["scores"]):
        if score < score_threshold:
            continue
        colour = rng.integers(60, 256, size=3)
        m = mask.astype(bool)
        canvas[m] = (0.55 * canvas[m] + 0.45 * colour).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, tuple(int(c) for c in colour), 1)
        ys, xs = np.nonzero(m)
        if len(xs):
            cv2.putText(canvas, f"{names[int(label)]} {score:.2f}", (int(xs.min()), max(8, int(ys.min()) - 2)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def _image_list(paths: Sequence[str], gt: str | None, categories: list[dict[str, Any]]) -> tuple[list[tuple[int, Path]], bool]:
    """-> ([(image_id, path)], from_dataset). One annotations JSON gives its own ids."""
    if len(paths) == 1 and paths[0].lower().endswith(".json"):
        src = load_coco_source(paths[0])
        if not categories_match(src.categories, categories):
            raise DataError(f"categories of {paths[0]} differ from the checkpoint's")
        return [(r.image_id, r.path) for r in src.records], True
    files = list_images(paths)
    if gt is None:
        return [(i + 1, p) for i, p in enumerate(files)], False
    src = load_coco_source(gt, check_images=False)
    if not categories_match(src.categories, categories):
        raise DataError(f"categories of {gt} differ from the checkpoint's")
    by_path = {r.path.resolve(): r.image_id for r in src.records}
    by_name: dict[str, int] = {}
    for r in src.records:
        by_name.setdefault(r.path.name, r.image_id)
    out = []
    for p in files:
        iid = by_path.get(p, by_name.get(p.name))
        if iid is None:
            raise DataError(f"image {p} is not in {gt}")
        out.append((iid, p))
    return out, True


def apply_score_threshold(model: torch.nn.Module, threshold: float) -> None:
    """Make the model return exactly the detections scoring >= ``threshold`` (``InstanceSegModel.set_score_threshold``).

    Masks that would be dropped anyway are never refined or upsampled (most of the post-processing
    time at 512^2). Each call starts from the checkpoint's own thresholds, so it may be called per request.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--score-threshold must be in [0, 1], got {threshold}")
    model.set_score_threshold(threshold)


def resolve_score_threshold(given: float | None, ckpt: dict[str, Any]) -> tuple[float, str]:
    """``--score-threshold`` if given, else the checkpoint's validated one (``score_threshold_of``)."""
    if given is not None:
        return float(given), "--score-threshold"
    return score_threshold_of(ckpt)


def run_inference(model: torch.nn.Module, items: list[tuple[int, Path]], category_ids: Sequence[int], image_size: int,
                  device: torch.device, *, refine: bool | None = None, overlays: Path | None = None,
                  names: Sequence[str] = (), overlay_threshold: float = 0.3, events: bool = False,
                  batch_size: int = 1, workers: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predict a list of (image_id, path); returns (COCO results, image entries), in the list's order.

    Up to ``batch_size`` consecutive images of one letterboxed size share a forward pass
    (``batches_of_one_shape``); ``workers`` data-loader processes decode and letterbox the next
    images meanwhile. Each image's predictions are those of a batch of one, up to float rounding in
    the convolutions (a score may differ in the 6th decimal).
    """
    dataset = ImageFiles([path for _, path in items], image_size, keep_images=overlays is not None)
    # spawned, not forked: a fork of a process whose OpenMP / OpenCV thread pools have run (a warm
    # server, a test process) can deadlock in the child's first parallel call
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_one_item,
                                         worker_init_fn=_worker_init if workers else None,
                                         multiprocessing_context="spawn" if workers else None)
    results: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    last = 0.0
    n = 0
    for batch in batches_of_one_shape(iter(loader), batch_size):
        x = torch.stack([item.tensor for item in batch])
        preds = predict_batch(model, x, [item.valid_hw for item in batch], [item.image_hw for item in batch],
                              device, refine)
        for item, pred in zip(batch, preds):
            iid, path = items[item.index]
            results.extend(to_coco_results(iid, pred, category_ids))
            h, w = item.image_hw
            images.append({"id": iid, "file_name": str(path), "width": w, "height": h})
            if overlays is not None and item.image is not None:
                ok, buf = cv2.imencode(".png", draw_predictions(item.image, pred, names, overlay_threshold)[..., ::-1])
                if ok:
                    atomic_write_bytes(overlays / f"{Path(path).stem}_{iid}.png", buf.tobytes())
        n += len(batch)
        now = time.perf_counter()
        if events and (now - last > 0.5 or n == len(items)):
            last = now
            rate = n / max(now - t0, 1e-9)
            protocol.emit("progress", step=n, total=len(items), phase="predict", eta_s=(len(items) - n) / rate,
                          images_per_s=rate)
    return results, images




class RequestError(ValueError):
    """A serve request that cannot be answered; the server reports it and keeps serving."""


def _parse_request(line: str) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RequestError(f"request is not valid JSON ({exc.msg})") from None
    if not isinstance(req, dict):
        raise RequestError("request must be a JSON object")
    return req


def _request_id(req: dict[str, Any]) -> Any:
    rid = req.get("id")
    return rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None


class _Server:
    """The loaded model plus what every request shares (categories, input size, thresholds)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = resolve_device(args.device)
        self.model, ckpt = load_model(args.checkpoint, self.device)
        self.default_threshold, self.threshold_source = resolve_score_threshold(args.score_threshold, ckpt)
        # Per-request thresholds start from the checkpoint's own values (set_score_threshold does not
        # ratchet), exactly like a fresh one-shot run. A bad --score-threshold fails at start, not per request.
        apply_score_threshold(self.model, self.default_threshold)
        self.image_size = int(args.image_size or ckpt.get("train_config", {}).get("image_size", 256))
        self.category_ids = [int(c["id"]) for c in ckpt["categories"]]
        self.refine = False if args.no_refine else None

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        """Run one predict request; returns the result event's fields."""
        if req.get("cmd", "predict") != "predict":
            raise RequestError(f"unknown cmd {req.get('cmd')!r}; expected 'predict' or 'stop'")
        image, out = req.get("image"), req.get("out")
        if not isinstance(image, str) or not image or not isinstance(out, str) or not out:
            raise RequestError("a predict request needs 'image' and 'out' paths")
        threshold = req.get("score_threshold", self.default_threshold)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise RequestError(f"score_threshold must be a number, got {threshold!r}")
        t0 = time.perf_counter()
        apply_score_threshold(self.model, float(threshold))
        img = read_image(Path(image))
        pred = predict_image(self.model, img, self.image_size, self.device, refine=self.refine)
        results = [r for r in to_coco_results(1, pred, self.category_ids) if r["score"] >= float(threshold)]
        atomic_write_json(Path(out), results)
        return {"out": out, "count": len(results), "width": int(img.shape[1]), "height": int(img.shape[0]),
                "ms": round((time.perf_counter() - t0) * 1000.0, 1)}


def serve(args: argparse.Namespace, stdin: IO[str] | None = None) -> int:
    """Load once, then answer requests from ``stdin`` until stop/EOF (protocol in the module docstring)."""
    source = sys.stdin if stdin is None else stdin
    t0 = time.perf_counter()
    server = _Server(args)
    protocol.emit("log", message="ready", device=str(server.device), image_size=server.image_size,
                  load_s=round(time.perf_counter() - t0, 3), score_threshold=server.default_threshold,
                  score_threshold_source=server.threshold_source)
    served = 0
    while True:
        line = source.readline()
        if not line:  # EOF: the parent closed the pipe (or died)
            break
        if not line.strip():
            continue
        if protocol.is_stop_command(line):
            break
        rid = None
        try:
            req = _parse_request(line)
            rid = _request_id(req)
            fields = server.answer(req)
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the warm model down
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not isinstance(exc, (ValueError, OSError)):
                text = f"{type(exc).__name__}: {text}"
            log.debug("request %s failed", rid, exc_info=True)
            protocol.emit("error", message=text, id=rid)
            continue
        served += 1
        protocol.emit("result", id=rid, **fields)
    protocol.emit("done", served=served)
    return 0


def check_args(args: argparse.Namespace) -> None:
    """predict's argument checks (no file read): before loading anything."""
    check_image_size(args.image_size)
    check_fraction(args.score_threshold, "--score-threshold", closed=True)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    if getattr(args, "serve", False):
        return serve(args)
    # every check before the first write: output paths, images, device, checkpoint
    out = check_out_file(args.out)
    overlays = check_out_folder(args.overlays, "--overlays") if args.overlays is not None else None
    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, device)
    categories = ckpt["categories"]
    items, from_dataset = _image_list(args.images, args.gt, categories)
    check_images_readable([path for _, path in items])
    threshold, source = resolve_score_threshold(args.score_threshold, ckpt)
    apply_score_threshold(model, threshold)
    protocol.emit("log", message=f"score threshold {threshold:.3f}: {source}", score_threshold=threshold)
    size = int(args.image_size or ckpt.get("train_config", {}).get("image_size", 256))
    cat_ids = [int(c["id"]) for c in categories]
    names = [str(c.get("name", c["id"])) for c in categories]
    results, images = run_inference(model, items, cat_ids, size, device, refine=False if args.no_refine else None,
                                    overlays=overlays, names=names, overlay_threshold=threshold, events=True,
                                    batch_size=args.batch_size, workers=args.workers)
    results = [r for r in results if r["score"] >= threshold]
    atomic_write_json(out, results)
    index = None
    if not from_dataset:
        index = out.with_name(out.stem + ".images.json")
        atomic_write_json(index, {"images": images, "categories": categories}, indent=1)
    protocol.emit("done", out=str(out), images=len(images), detections=len(results),
                  images_index=str(index) if index else None)
    return 0
