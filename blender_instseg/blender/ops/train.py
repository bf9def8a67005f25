"""Train: start the out-of-process trainer (the interpreter with torch) and follow its progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bpy

from ...procs.argv import child_env, ml_argv
from ...procs.child import ChildResult
from ..props import resolve_paths, settings
from . import jobs
from .base import JobOperatorMixin, python_for


def train_args(context: Any) -> list[str]:
    s = settings(context)
    paths = resolve_paths(context)
    if not paths.dataset.exists():
        raise ValueError(f"dataset folder not found: {paths.dataset} (generate a dataset first)")
    args = ["--data", str(paths.dataset), "--out", str(paths.run), "--device", s.device]
    if (paths.run / "last.pt").exists():
        if not s.resume_training:
            raise ValueError(f"run folder {paths.run} already holds a run: tick Resume to continue it, "
                             "or choose another Run Folder")
        args.append("--resume")
    else:
        args += ["--init", s.train_init]
    if s.epochs > 0:
        args += ["--epochs", str(s.epochs)]
    else:
        # the trainer's --minutes is the run's whole budget; a resumed run has spent some of it, so
        # Resume trains Minutes more instead of stopping at once
        spent = trained_minutes(paths.run) if "--resume" in args else 0.0
        args += ["--minutes", f"{spent + s.train_minutes:.4g}"]
    return args


def trained_minutes(run_dir: Path) -> float:
    """Training minutes a run has spent so far: the last ``train_seconds`` its events.jsonl reports."""
    seconds = 0.0
    try:
        lines = (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0.0
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("train_seconds"), (int, float)):
            seconds = float(event["train_seconds"])
    return seconds / 60.0


class INSTSEG_OT_train(JobOperatorMixin, bpy.types.Operator):
    """Train the bundled model on the dataset (out of process; Cancel keeps a usable checkpoint)"""

    bl_idname = "instseg.train"
    bl_label = "Train"

    def build_spec(self, context: Any) -> jobs.JobSpec:
        args = train_args(context)
        python = python_for(self, context)
        paths = resolve_paths(context)
        paths.run.mkdir(parents=True, exist_ok=True)

        def on_done(ctx: Any, result: ChildResult) -> str:
            done = result.done.data if result.done is not None else {}
            ckpt = done.get("checkpoint") or str(paths.run / "last.pt")
            return f"checkpoint: {ckpt}"

        return jobs.JobSpec("train", ml_argv(python, "train", args), on_done, env=child_env(),
                            cwd=str(paths.run), label="training")


classes = (INSTSEG_OT_train,)
