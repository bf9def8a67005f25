"""PNG plots for the evaluation report.

matplotlib is imported inside each function (Agg backend, no display needed), so importing the
evaluator stays fast and works where matplotlib is missing; the caller then skips plots.
Each function returns the path it wrote.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..fileio import atomic_write_bytes

GT_COLOUR = (0, 230, 0)       # RGB
PRED_COLOUR = (255, 40, 200)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Render to memory, then write atomically: a reader never sees half a PNG."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_pr_curves(metrics: dict, path: str | Path) -> Path:
    """Precision-recall curve per IoU threshold (mask AP; mean over categories, all areas)."""
    plt = _pyplot()
    curves = metrics["curves"]
    recall = np.asarray(curves["recall"])
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    cmap = plt.get_cmap("viridis")
    items = list(curves["precision"].items())
    for i, (thr, prec) in enumerate(items):
        p = np.asarray(prec, dtype=float)
        if (p < 0).all():
            continue
        ax.plot(recall, np.where(p < 0, np.nan, p), color=cmap(i / max(1, len(items) - 1)), label=f"IoU {thr}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Mask precision-recall (AP {max(metrics['segm']['AP'], 0) * 100:.1f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_ap_by_occlusion(metrics: dict, path: str | Path) -> Path:
    """Mask AP and Boundary AP per visible-fraction bucket, with GT counts on the bars."""
    plt = _pyplot()
    buckets = metrics["by_occlusion"].get("buckets", [])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if not buckets:
        ax.text(0.5, 0.5, "ground truth has no visible_fraction", ha="center", va="center")
        ax.set_axis_off()
    else:
        x = np.arange(len(buckets))
        ap = [max(b["AP"], 0) * 100 for b in buckets]
        bap = [max(b["boundary_AP"], 0) * 100 for b in buckets]
        ax.bar(x - 0.2, ap, 0.4, label="mask AP")
        ax.bar(x + 0.2, bap, 0.4, label="boundary AP")
        for xi, b in zip(x, buckets):
            ax.text(xi, max(ap[xi], bap[xi]) + 1.5, f"n={b['n_gt']}", ha="center", fontsize=8)
        ax.set_xticks(x, [b["label"] for b in buckets])
        ax.set_xlabel("visible fraction of the ground-truth object")
        ax.set_ylabel("AP (%)")
        ax.set_ylim(0, 110)
        ax.legend()
        ax.set_title("AP by occlusion")
    fig.tight_layout()
    return _save(fig, Path(path))


def _outline(canvas: np.ndarray, masks: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    for i in range(masks.shape[2]):
        contours, _ = cv2.findContours(np.ascontiguousarray(masks[:, :, i]), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, colour, thickness)


def _load_rgb(root: Path | None, info: dict) -> np.ndarray:
    h, w = int(info["height"]), int(info["width"])
    if root is not None and info.get("file_name"):
        img = cv2.imread(str(root / info["file_name"]), cv2.IMREAD_COLOR)
        if img is not None and img.shape[:2] == (h, w):
            return np.ascontiguousarray(img[:, :, ::-1])
    return np.full((h, w, 3), 128, np.uint8)


def plot_worst_images(gt: Any, dt: Any, worst: list[dict], image_root: str | Path | None, score_threshold: float,
                      path: str | Path, max_images: int = 16) -> Path:
    """Grid of the worst images: GT outlines (green) vs predictions >= threshold (magenta) over the RGB.

    ``gt``/``dt`` are the loaded pycocotools COCO objects. A missing image is drawn on grey.
    """
    plt = _pyplot()
    rows_ = worst[:max_images]
    n = max(1, len(rows_))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.7 * rows + 0.4), squeeze=False)
    root = Path(image_root) if image_root is not None else None
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, w in zip(axes.ravel(), rows_):
        info = gt.imgs[w["image_id"]]
        canvas = _load_rgb(root, info)
        thick = max(1, round(max(canvas.shape[:2]) / 256))
        g_anns = gt.loadAnns(gt.getAnnIds(imgIds=[w["image_id"]]))
        d_anns = [a for a in dt.loadAnns(dt.getAnnIds(imgIds=[w["image_id"]])) if a["score"] >= score_threshold]
        if g_anns:
            _outline(canvas, mask_utils.decode([a["segmentation"] for a in g_anns]), GT_COLOUR, thick)
        if d_anns:
            _outline(canvas, mask_utils.decode([a["segmentation"] for a in d_anns]), PRED_COLOUR, thick)
        ax.imshow(canvas, interpolation="nearest")
        ax.set_title(f"id {w['image_id']} seed {w['seed']}\nerr {w['error']:.2f} miss {w['n_missed']} "
                     f"fp {w['n_false_pos']}", fontsize=8)
    fig.suptitle(f"worst images: ground truth (green) vs predictions >= {score_threshold:g} (magenta)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return _save(fig, Path(path))
