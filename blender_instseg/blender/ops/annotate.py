"""Annotate This Scene: the artist's own scene or animation labelled by annotate-scene in a child process.

The child (``blender.annotate_scene``, started like the generator: ``children.panel_generator_argv``)
loads the .blend itself and never saves it, so Blender's UI process renders nothing and the
artist's file is never modified. It reads the file on disk: with unsaved changes (or a file never
saved) the open file is first saved as a copy (``dataset.save_scene_copy``: the artist's file path,
unsaved state and undo history stay as they are) and the child reads the copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ...procs.argv import ANNOTATE_MODULE, child_env
from ...procs.child import ChildResult
from ..children import panel_generator_argv
from ..props import output_root
from . import jobs
from .base import JobOperatorMixin
from .dataset import save_scene_copy, scene_copy_path


def annotate_out(context: Any, out: str = "") -> Path:
    """The dataset folder: ``out`` when given, else ``<output folder>/annotated/<file or scene name>``."""
    if out.strip():
        return Path(bpy.path.abspath(out.strip()))
    name = Path(bpy.data.filepath).stem if bpy.data.filepath else context.scene.name
    return output_root(context) / "annotated" / bpy.path.clean_name(name)


def needs_copy() -> bool:
    """The child must read a saved copy: the open file was never saved, or has unsaved changes."""
    return not bpy.data.filepath or bpy.data.is_dirty


def annotate_args(context: Any, out: Path, *, frame_start: int = 0, frame_end: int = 0, masks_only: bool = False,
                  samples: int = 0, blend: Path | None = None, uncategorized: str = "background",
                  blend_collection: str = "") -> list[str]:
    """annotate-scene's arguments (docs/annotate.md); frames 0/0: the scene's range, samples 0: the scene's.

    The messages name the panel's settings (Start, End), not the command's flags."""
    scene = context.scene
    first = frame_start or scene.frame_start
    last = frame_end or scene.frame_end
    if last < first:
        raise ValueError(f"End ({last}) is before Start ({first})")
    if scene.camera is None:
        raise ValueError("the scene has no active camera; set Scene > Camera")
    source = blend if blend is not None else (scene_copy_path() if needs_copy() else Path(bpy.data.filepath))
    args = ["--blend", str(source), "--out", str(out), "--frames", f"{first}-{last}", "--progress", "jsonl"]
    if masks_only:
        args.append("--masks-only")
    elif samples > 0:
        args += ["--samples", str(samples)]
    if uncategorized != "background":
        args += ["--uncategorized", uncategorized]
    if blend_collection.strip():
        args += ["--blend-collection", blend_collection.strip()]
    return args


def done_summary(out: Path, done: dict[str, Any]) -> str:
    """The line the panel shows when annotate-scene ends: frames, the dataset folder, and whether the
    video JSON (YouTube-VIS layout) was written."""
    from ...core.formats import vis

    if done.get("stopped"):
        return f"annotate: stopped after {done.get('images', 0)} frame(s) in {out}; run again to resume"
    written = f"; {vis.VIS_FILE} written" if (out / vis.VIS_FILE).is_file() else f"; no {vis.VIS_FILE}"
    return f"annotated: {done.get('images', 0)} frame(s) rendered into {out}{written}"


class INSTSEG_OT_annotate_scene(JobOperatorMixin, bpy.types.Operator):
    """Label this scene as it is (its camera, lights, materials, animation) over a frame range: exact masks,
    one id per object for all frames (in a background process; the file is never modified)"""

    bl_idname = "instseg.annotate_scene"
    bl_label = "Annotate This Scene"

    out: StringProperty(  # type: ignore[valid-type]
        name="Output Folder", default="", subtype="DIR_PATH",
        description="Dataset folder; empty = <output folder>/annotated/<file name>")
    frame_start: IntProperty(  # type: ignore[valid-type]
        name="Start", default=0, min=0, description="First frame; 0 = the scene's start")
    frame_end: IntProperty(  # type: ignore[valid-type]
        name="End", default=0, min=0, description="Last frame; 0 = the scene's end")
    masks_only: BoolProperty(  # type: ignore[valid-type]
        name="Masks Only", default=False, description="One fast 1-sample render per frame (labels are the same)")
    samples: IntProperty(  # type: ignore[valid-type]
        name="Samples", default=0, min=0, description="Cycles samples for the images; 0 = the scene's own")
    uncategorized: EnumProperty(  # type: ignore[valid-type]
        name="Uncategorized", default="background",
        items=[("background", "Background", "Objects without a category render as background"),
               ("ignore", "Left Out", "Objects without a category are left out of the render")])
    blend_collection: StringProperty(  # type: ignore[valid-type]
        name="Parent Collection", default="",
        description="The collection whose children are the categories; empty = InstSeg")

    def build_spec(self, context: Any) -> jobs.JobSpec:
        out = annotate_out(context, self.out)
        args = annotate_args(context, out, frame_start=self.frame_start, frame_end=self.frame_end,
                             masks_only=self.masks_only, samples=self.samples, uncategorized=self.uncategorized,
                             blend_collection=self.blend_collection)
        if needs_copy():
            save_scene_copy()
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = panel_generator_argv(args, module=ANNOTATE_MODULE)

        def on_done(ctx: Any, result: ChildResult) -> str:
            return done_summary(out, result.done.data if result.done is not None else {})

        return jobs.JobSpec("annotate", argv, on_done, env=child_env(), cwd=str(out.parent),
                            label=f"annotating frames {args[args.index('--frames') + 1]}")


classes = (INSTSEG_OT_annotate_scene,)
