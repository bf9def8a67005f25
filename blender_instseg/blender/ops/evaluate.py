"""Evaluate: mask AP, AP50, Boundary AP and the worst images, shown in the panel.

With a checkpoint the model process predicts and evaluates (``-m blender_instseg.ml evaluate``);
with a predictions file the bpy-free evaluator runs (``-m blender_instseg.core evaluate``). Both
write REPORT/metrics.json, which is what the panel reads back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .. import OperatorReturn
from ...core.fileio import read_json
from ...procs.argv import child_env, core_argv, ml_argv
from ..props import job_state, resolve_paths, settings
from . import jobs
from .base import JobOperatorMixin, python_for


def ground_truth_file(dataset: Path) -> Path:
    """The dataset's validation split when there is one, else all of it."""
    if dataset.is_file():
        return dataset
    for name in ("annotations_val.json", "annotations.json"):
        if (dataset / name).is_file():
            return dataset / name
    raise ValueError(f"no annotations.json in {dataset} (generate a dataset first)")


def scored_on(dataset: Path, gt: Path | None = None) -> tuple[str, bool]:
    """Which images a score is on, in words, and whether they are the training images: ``gt`` when
    a file is given (predictions), else the one the model's evaluate reads (val, test, then all)."""
    if gt is None:
        if dataset.is_file():
            gt = dataset
        else:
            gt = next((dataset / n for n in ("annotations_val.json", "annotations_test.json", "annotations.json")
                       if (dataset / n).is_file()), dataset / "annotations.json")
    if gt.name.startswith("annotations_") and gt.name != "annotations_train.json":
        split = gt.stem[len("annotations_"):]
        return f"the {split} split ({gt.name})", False
    return (f"all images ({gt.name}), the training images too: set Validation Fraction and generate again "
            "for a held-out score"), True


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else -1.0


def load_metrics(context: Any, report_dir: Path, source: tuple[str, bool] = ("", False)) -> str:
    """Copy metrics.json's headline numbers and worst images into the panel state, with the words
    saying which images they are on (``scored_on``)."""
    metrics = read_json(report_dir / "metrics.json", "metrics file")
    if not isinstance(metrics, dict) or "segm" not in metrics:
        raise ValueError(f"{report_dir / 'metrics.json'} has no 'segm' section")
    state = job_state(context)
    segm = metrics.get("segm") or {}
    boundary = metrics.get("boundary") or {}
    state.mask_ap = _num(segm.get("AP"))
    state.mask_ap50 = _num(segm.get("AP50"))
    state.boundary_ap = _num(boundary.get("AP"))
    state.has_metrics = True
    state.report_dir = str(report_dir)
    state.eval_source, state.eval_on_training_images = source
    state.worst_images.clear()
    for row in metrics.get("worst_images") or []:
        item = state.worst_images.add()
        item.image_id = int(row.get("image_id", 0))
        item.file_name = str(row.get("file_name", ""))
        item.error = _num(row.get("error", row.get("score")))
        item.n_missed = int(row.get("n_missed", 0) or 0)
        item.n_false_pos = int(row.get("n_false_pos", 0) or 0)
    return f"mask AP {state.mask_ap:.3f}, AP50 {state.mask_ap50:.3f}, Boundary AP {state.boundary_ap:.3f}"


class INSTSEG_OT_evaluate(JobOperatorMixin, bpy.types.Operator):
    """Evaluate the checkpoint (or a predictions file) on the dataset: mask AP, Boundary AP, worst images"""

    bl_idname = "instseg.evaluate"
    bl_label = "Evaluate"

    def build_spec(self, context: Any) -> jobs.JobSpec:
        s = settings(context)
        paths = resolve_paths(context)
        gt = ground_truth_file(paths.dataset)
        report = paths.report
        report.mkdir(parents=True, exist_ok=True)
        python = python_for(self, context)
        require_done = True
        if s.predictions_path:
            pred = Path(bpy.path.abspath(s.predictions_path))
            if not pred.is_file():
                raise ValueError(f"predictions file not found: {pred}")
            argv = core_argv(python, "evaluate", ["--gt", str(gt), "--pred", str(pred), "--out", str(report),
                                                  "--score-threshold", f"{s.score_threshold:g}"])
            require_done = False  # the core CLI prints a report, not protocol events
        else:
            if not paths.checkpoint.is_file():
                raise ValueError(f"checkpoint not found: {paths.checkpoint} (train first or set Checkpoint)")
            argv = ml_argv(python, "evaluate", ["--checkpoint", str(paths.checkpoint),
                                                "--data", str(paths.dataset), "--out", str(report),
                                                "--device", s.device])
        source = scored_on(paths.dataset, gt if s.predictions_path else None)
        return jobs.JobSpec("evaluate", argv, lambda ctx, result: load_metrics(ctx, report, source),
                            env=child_env(), cwd=str(report), label="evaluating", require_done=require_done)


class INSTSEG_OT_open_report(bpy.types.Operator):
    """Open the evaluation report folder in the file browser"""

    bl_idname = "instseg.open_report"
    bl_label = "Open Report Folder"

    def execute(self, context: Any) -> set[OperatorReturn]:
        folder = job_state(context).report_dir or str(resolve_paths(context).report)
        if not Path(folder).is_dir():
            self.report({"ERROR"}, f"no report yet: {folder} does not exist")
            return {"CANCELLED"}
        if bpy.app.background:  # no desktop to open it on
            self.report({"INFO"}, f"report folder: {folder}")
            return {"FINISHED"}
        bpy.ops.wm.path_open(filepath=folder)
        return {"FINISHED"}


classes = (INSTSEG_OT_evaluate, INSTSEG_OT_open_report)
