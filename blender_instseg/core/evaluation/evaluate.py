"""``evaluate``: score a predictions file against COCO ground truth and write a report folder.

Writes ``metrics.json`` (machine-readable, atomic), ``report.md`` (the same Markdown the CLI
prints) and, when matplotlib is importable, ``pr_curves.png``, ``ap_by_occlusion.png`` and
``worst_images.png``. See docs/evaluation.md for what each number means.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..cliargs import path_arg
from ..fileio import atomic_write_json, atomic_write_text
from . import metrics as M
from . import tracks
from .inputs import InputError, load_ground_truth, load_predictions

log = logging.getLogger(__name__)

__all__ = ["evaluate", "render_report", "configure_parser", "run"]


def evaluate(gt: str | Path | dict, predictions: str | Path | list, *, out_dir: str | Path | None = None,
             score_threshold: float = 0.5, dilation_ratio: float = 0.02, worst: int = 10,
             plots: bool = True, image_root: str | Path | None = None) -> dict:
    """Evaluate ``predictions`` (COCO results: list or JSON path) against ``gt`` (COCO dict or path).

    Returns the metrics.json content. With ``out_dir`` the report files are written there.
    Images for the worst-images plot are looked up under ``image_root``, by default the folder
    of the ground-truth file (COCO ``file_name`` is relative to it); missing images are drawn on grey.
    Raises ``inputs.InputError`` (a ValueError) with a one-line message on bad input.
    """
    if worst < 0:
        raise InputError(f"--worst must be >= 0, got {worst}")
    t0, c0 = time.perf_counter(), time.process_time()
    coco_gt, gt_root = load_ground_truth(gt)
    coco_dt = load_predictions(predictions, coco_gt)
    t_load, c_load = time.perf_counter() - t0, time.process_time() - c0
    result = M.compute_metrics(coco_gt, coco_dt, score_threshold=score_threshold,
                               dilation_ratio=dilation_ratio, worst=worst)
    metrics = result.metrics
    metrics["timing_s"] = {"load": round(t_load, 4), **metrics["timing_s"]}
    metrics["timing_cpu_s"] = {"load": round(c_load, 4), **metrics["timing_cpu_s"]}
    if tracks.has_tracks(coco_gt):  # an annotated animation: do the predictions follow each object?
        metrics["tracks"] = tracks.track_consistency(coco_gt, coco_dt, score_threshold=score_threshold)
    if out_dir is None:
        return metrics
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"report folder is a file: {out}")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if plots:
        root = Path(image_root) if image_root is not None else gt_root
        files.update(_write_plots(result, coco_gt, coco_dt, out, root, score_threshold))
    files["report"] = "report.md"
    files["metrics"] = "metrics.json"
    metrics["files"] = files
    atomic_write_text(out / "report.md", render_report(metrics))
    atomic_write_json(out / "metrics.json", _json_clean(metrics), indent=2)
    return metrics


def _write_plots(result: M.Evaluation, gt: Any, dt: Any, out: Path, root: Path | None,
                 score_threshold: float) -> dict[str, str]:
    """Plots are optional: without matplotlib (or on a plotting failure) warn and carry on."""
    try:
        from . import plots
        files = {}
        files["pr_curves"] = plots.plot_pr_curves(result.metrics, out / "pr_curves.png").name
        files["ap_by_occlusion"] = plots.plot_ap_by_occlusion(result.metrics, out / "ap_by_occlusion.png").name
        if result.metrics["worst_images"]:
            files["worst_images"] = plots.plot_worst_images(
                gt, dt, result.metrics["worst_images"], root, score_threshold, out / "worst_images.png").name
        return files
    except ImportError as exc:
        log.warning("plots skipped (matplotlib missing?): %s", exc)
        return {}
    except (OSError, ValueError, RuntimeError) as exc:  # a plot must never cost the metrics
        log.warning("plots skipped: %s", exc)
        return {}


def _json_clean(value: Any) -> Any:
    """metrics.json must be strict JSON: NaN/Inf become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _f(v: Any, pct: bool = True) -> str:
    """-1 is pycocotools' 'no ground truth here'; show it as n/a instead of a fake number."""
    if v is None or (isinstance(v, (int, float)) and v < 0):
        return "n/a"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_report(m: dict) -> str:
    """Short Markdown report: the headline table, then breakdowns. Percent points unless stated."""
    c = m["counts"]
    s, b = m["segm"], m["boundary"]
    lines = [f"# Evaluation ({c['images']} images, {c['gt']} ground-truth instances, {c['predictions']} predictions)", ""]
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"]
    lines += _table(["metric"] + keys, [["mask"] + [_f(s[k]) for k in keys],
                                        ["boundary"] + [_f(b[k]) for k in keys]])
    lines += ["", f"Mean IoU of matches (IoU >= 0.5, score >= {m['params']['score_threshold']}): "
                  f"mask {_f(b['mean_mask_iou'], False)}, boundary {_f(b['mean_boundary_iou'], False)} "
                  f"over {b['n_matched_pairs']} pairs (dilation ratio {b['dilation_ratio']})."]
    t = m["at_threshold"]
    lines += ["", f"At score >= {t['score_threshold']} and IoU 0.5: precision {_f(t['precision'])}, "
                  f"recall {_f(t['recall'])}, F1 {_f(t['f1'])} (TP {t['tp']}, FP {t['fp']}, FN {t['fn']})."]
    if "best_f1" in m:
        bf = m["best_f1"]
        lines += ["", f"Best F1 at IoU 0.5: {_f(bf['f1'])} at score >= {bf['score_threshold']:.3f} "
                      f"(precision {_f(bf['precision'])}, recall {_f(bf['recall'])})."]
    lines += ["", "## Per category", ""]
    lines += _table(["category", "AP", "AP50", "boundary AP", "GT", "predictions"],
                    [[name, _f(v["AP"]), _f(v["AP50"]), _f(v["boundary_AP"]), str(v["n_gt"]), str(v["n_pred"])]
                     for name, v in m["per_category"].items()])
    lines += ["", "## By size (COCO area ranges)", ""]
    lines += _table(["size", "AP", "boundary AP", "GT"],
                    [[k, _f(v["AP"]), _f(v["boundary_AP"]), str(v["n_gt"])] for k, v in m["by_size"].items()])
    occ = m["by_occlusion"]
    lines += ["", "## By visible fraction (occlusion)", ""]
    if occ["buckets"]:
        lines += _table(["visible fraction", "AP", "AP50", "boundary AP", "GT"],
                        [[e["label"], _f(e["AP"]), _f(e["AP50"]), _f(e["boundary_AP"]), str(e["n_gt"])]
                         for e in occ["buckets"]])
        if occ["n_unknown"]:
            lines += ["", f"{occ['n_unknown']} ground-truth instances have no visible_fraction and are left out."]
    else:
        lines += ["The ground truth has no `visible_fraction`: no occlusion breakdown."]
    if "tracks" in m:
        tr = m["tracks"]
        lines += ["", "## Track consistency (videos)", ""]
        lines += _table(["videos", "GT tracks", "predicted tracks", "matched", "transitions", "ID switches",
                         "consistency"],
                        [[str(tr["videos"]), str(tr["gt_tracks"]), str(tr["pred_tracks"]), str(tr["matched"]),
                          str(tr["transitions"]), str(tr["id_switches"]),
                          _f(tr["consistency"]) if tr["consistency"] is not None else "n/a"]])
        lines += ["", f"Predictions with score >= {tr['score_threshold']} linked frame to frame by greedy mask IoU "
                      f">= {tr['iou_threshold']}; an ID switch is a ground-truth track matched to another predicted "
                      "track than the last time (docs/evaluation.md)."]
    lines += ["", "## Worst images (error = 1 - panoptic quality at IoU 0.5)", ""]
    if m["worst_images"]:
        lines += _table(["image_id", "seed", "file", "error", "missed", "false pos", "mean IoU"],
                        [[str(w["image_id"]), str(w["seed"]), str(w["file_name"]), f"{w['error']:.3f}",
                          str(w["n_missed"]), str(w["n_false_pos"]), _f(w["mean_matched_iou"], False)]
                         for w in m["worst_images"]])
    else:
        lines += ["No image has any error."]
    return "\n".join(lines) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=path_arg, metavar="ANNOTATIONS.json",
                        help="COCO ground truth (image file names are relative to its folder)")
    parser.add_argument("--pred", required=True, type=path_arg, metavar="PREDS.json",
                        help="COCO results list: [{image_id, category_id, score, segmentation (RLE)}]")
    parser.add_argument("--out", required=True, type=path_arg, metavar="REPORT_DIR",
                        help="folder for metrics.json, report.md and the PNG plots (created if missing)")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="score cut for precision/recall/F1 and the worst-images ranking (AP uses all "
                             "scores) [default: 0.5]")
    parser.add_argument("--dilation-ratio", type=float, default=0.02,
                        help="Boundary IoU band width as a fraction of the image diagonal [default: 0.02]")
    parser.add_argument("--worst", type=int, default=10, metavar="N",
                        help="how many worst images to list and draw [default: 10]")
    parser.add_argument("--image-root", default=None, type=path_arg, metavar="DIR",
                        help="folder the images' file_name is relative to [default: the folder of --gt]")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    if not math.isfinite(args.score_threshold):
        print(f"error: --score-threshold must be a number, got {args.score_threshold}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.dilation_ratio) and args.dilation_ratio > 0):
        print(f"error: --dilation-ratio must be > 0, got {args.dilation_ratio}", file=sys.stderr)
        return 2
    if args.worst < 0:
        print(f"error: --worst must be >= 0, got {args.worst}", file=sys.stderr)
        return 2
    try:
        metrics = evaluate(args.gt, args.pred, out_dir=args.out, score_threshold=args.score_threshold,
                           dilation_ratio=args.dilation_ratio, worst=args.worst, plots=not args.no_plots,
                           image_root=args.image_root)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_report(metrics))
    print(f"\nreport written to {Path(args.out)}")
    return 0
