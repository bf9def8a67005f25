"""Generate dataset: run the generator in a child process so the UI keeps drawing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import bpy

from ...procs.argv import child_env
from ...procs.child import ChildResult
from ..children import panel_generator_argv
from ..props import resolve_paths, settings
from . import jobs
from .base import JobOperatorMixin


def scene_copy_path() -> Path:
    """Where Generate saves the copy of the open file that the generator reads (--blend)."""
    return Path(tempfile.gettempdir()) / f"instseg-scene-{os.getpid()}.blend"


def save_scene_copy() -> Path:
    """Save the open file as it is now, collections and all, to ``scene_copy_path()``: ``copy=True``
    leaves the artist's file path, its unsaved state and its undo history untouched."""
    path = scene_copy_path()
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, check_existing=False)
    return path


def generate_args(context: Any) -> list[str]:
    """The generator's CLI arguments for the scene's settings (see docs/generator.md)."""
    s = settings(context)
    if s.min_objects > s.max_objects:
        raise ValueError(f"Min Objects ({s.min_objects}) is larger than Max Objects ({s.max_objects})")
    out = resolve_paths(context).dataset
    args = ["--out", str(out), "--num-images", str(s.num_images), "--seed", str(s.seed),
            "--resolution", str(s.resolution), "--min-objects", str(s.min_objects),
            "--max-objects", str(s.max_objects), "--samples", str(s.samples), "--progress", "jsonl"]
    if s.masks_only:
        args.append("--masks-only")
    if s.val_fraction > 0:
        args += ["--val-fraction", f"{s.val_fraction:g}"]
    if s.object_source == "FOLDER":
        folder = bpy.path.abspath(s.assets_dir.strip()) if s.assets_dir.strip() else ""
        if not folder:
            raise ValueError("Objects is set to Asset Folder but no Asset Folder is chosen")
        args += ["--assets", folder]
    elif s.object_source == "COLLECTIONS":
        args += ["--blend", str(scene_copy_path())]
        if s.blend_collection.strip():
            args += ["--blend-collection", s.blend_collection.strip()]
    args += ["--placement", s.placement]
    if s.real_size:
        args.append("--real-size")
    if s.distractors_dir.strip():
        args += ["--distractors", bpy.path.abspath(s.distractors_dir.strip()), "--max-distractors",
                 str(s.max_distractors)]
    return args


class INSTSEG_OT_generate_dataset(JobOperatorMixin, bpy.types.Operator):
    """Render a synthetic COCO dataset with the settings above (in a background process)"""

    bl_idname = "instseg.generate_dataset"
    bl_label = "Generate Dataset"

    def build_spec(self, context: Any) -> jobs.JobSpec:
        args = generate_args(context)
        if settings(context).object_source == "COLLECTIONS":
            save_scene_copy()
        out = resolve_paths(context).dataset
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = panel_generator_argv(args)

        def on_done(ctx: Any, result: ChildResult) -> str:
            done = result.done.data if result.done is not None else {}
            n = done.get("images", done.get("num_images", settings(ctx).num_images))
            return f"dataset: {n} images in {out}"

        return jobs.JobSpec("generate", argv, on_done, env=child_env(), cwd=str(out.parent),
                            label=f"generating {settings(context).num_images} images")


classes = (INSTSEG_OT_generate_dataset,)
