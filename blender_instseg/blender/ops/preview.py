"""Preview Labels and the dataset browser: look at labels before (and after) a batch.

**Preview Labels** renders ONE image of the dataset Generate would write with the panel's settings
(image ``Preview Image`` of Seed: the same scene, the same labels) in a generator child: masks only,
no depth, at most ``PREVIEW_MAX_SIDE`` pixels on the long side. The generator resets Blender's data,
so it never runs in the artist's Blender; the artist's scene, selection and frame stay as they were.
The child writes into a fresh ``run-*`` folder under ``<output folder>/preview/`` (the previous one is
removed), and the record it writes gives the counts: annotated, hidden by reason, small.

**The browser** steps through the images of a dataset folder (generated, or an annotated scene):
``core.formats.browse`` reads a record or the COCO file, ``ui.overlay`` draws the masks, and only the
finished picture is handed to Blender (``InstSeg Dataset``, for the Image Editor).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import bpy
from bpy.props import IntProperty

from ...core.fileio import atomic_write_json
from ...core.formats import browse
from ...procs.argv import child_env
from ...procs.child import ChildResult
from .. import OperatorReturn
from ..children import panel_generator_argv
from ..props import job_state, resolve_paths, settings
from ..ui import overlay
from . import jobs
from .base import JobOperatorMixin
from .dataset import config_overrides, generate_args, panel_config, save_scene_copy

#: the long side of a preview in pixels: a masks-only render this small takes a second or two
PREVIEW_MAX_SIDE = 256
#: flags of Generate's command line the preview sets itself (flag -> how many values follow it)
_REPLACED = {"--out": 1, "--num-images": 1, "--resolution": 1, "--config": 1, "--masks-only": 0}


def preview_root(context: Any) -> Path:
    """``<output folder>/preview``: the previews' run folders and their config file."""
    return resolve_paths(context).root / "preview"


def preview_resolution(width: int, height: int, most: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """The dataset's size scaled down (never up) so that its long side is at most ``most``."""
    scale = min(1.0, most / max(width, height))
    return max(16, round(width * scale)), max(16, round(height * scale))


def _without(args: list[str], flags: dict[str, int]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        if args[i] in flags:
            i += 1 + flags[args[i]]
            continue
        out.append(args[i])
        i += 1
    return out


def preview_args(context: Any, index: int, config: Path) -> tuple[list[str], dict[str, Any]]:
    """The generator's arguments for image ``index`` of the panel's dataset (all but ``--out``), and
    the data to write to ``config`` (its ``--config``).

    Generate's own arguments (so the panel is checked as Generate checks it, and the scene is the
    one Generate would build), with a small masks-only render of that one index and no merge,
    depth or contact sheet. ``objects.min_visible_pixels`` shrinks with the area, so an object the
    dataset would label is labelled in the smaller preview too.
    """
    s = settings(context)
    args = _without(generate_args(context), _REPLACED)
    cfg = panel_config(context)
    frames = max(1, cfg.sequence.frames)
    num_images = math.ceil(max(s.num_images, index + 1) / frames) * frames  # whole scenes (--frames)
    width, height = cfg.render.resolution
    pw, ph = preview_resolution(width, height)
    data = config_overrides(context)
    if (pw, ph) != (width, height):
        pixels = max(1, round(cfg.objects.min_visible_pixels * pw * ph / (width * height)))
        data.setdefault("objects", {})["min_visible_pixels"] = pixels
    args += ["--num-images", str(num_images), "--only-index", str(index),
             "--resolution", f"{pw}x{ph}", "--masks-only", "--no-depth", "--no-merge", "--no-preview",
             "--config", str(config)]
    return args, data


def _new_run_dir(root: Path) -> Path:
    """A fresh ``run-*`` folder under ``root``, the earlier previews' folders removed (only ours)."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("run-*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))


def show_preview(context: Any, run_dir: Path, index: int, dataset_size: tuple[int, int]) -> str:
    """Draw the preview's labels into ``InstSeg Preview``, put its counts into the job state; the summary."""
    image = browse.open_folder(run_dir).image(0)
    if image.index != index:
        raise ValueError(f"the preview rendered image {image.index}, not {index}")
    width, height = dataset_size
    counts = image.counts(area_scale=(width * height) / (image.width * image.height))
    picture = overlay.draw_labels(image.rgb(), image.masks(), image.names())
    shown = overlay.to_shown_image(overlay.PREVIEW_NAME, picture)
    overlay.show_in_image_editors(context, shown)
    state = job_state(context)
    state.has_preview = True
    state.preview_index, state.preview_seed = index, str(image.seed)
    state.preview_size = f"{image.width}x{image.height}"
    if (image.width, image.height) != (width, height):
        state.preview_size += f" (dataset {width}x{height})"
    state.preview_annotated, state.preview_small = counts.annotated, counts.small
    state.preview_outside_frame = counts.hidden["outside_frame"]
    state.preview_occluded = counts.hidden["occluded"]
    state.preview_too_little_visible = counts.hidden["too_little_visible"]
    state.preview_categories = counts.categories_line()
    hidden = sum(counts.hidden.values())
    return f"preview: image {index}, {counts.annotated} labelled, {hidden} hidden, {counts.small} small"


class INSTSEG_OT_preview_labels(JobOperatorMixin, bpy.types.Operator):
    """Render one image of these settings (masks only, small, in a background process) and show its labels"""

    bl_idname = "instseg.preview_labels"
    bl_label = "Preview Labels"

    step: IntProperty(  # type: ignore[valid-type]
        name="Step", default=0, min=0, options={"SKIP_SAVE"},
        description="Add this to Preview Image first (Next Seed: the next image, with its own seed)")

    def build_spec(self, context: Any) -> jobs.JobSpec:
        s = settings(context)
        job_state(context).kind = "preview"  # a refused setting shows in the Preview box, not Generate's
        index = s.preview_index + self.step
        root = preview_root(context)
        config = root / "preview-config.json"
        args, data = preview_args(context, index, config)  # every check before anything is written
        if s.object_source == "COLLECTIONS":
            save_scene_copy()  # the generator reads a copy, as for Generate; the open file is not touched
        run_dir = _new_run_dir(root)
        atomic_write_json(config, data, indent=2)
        s.preview_index = index
        width, height = panel_config(context).render.resolution

        def on_done(ctx: Any, result: ChildResult) -> str:
            if result.done is not None and result.done.data.get("stopped"):
                return "preview stopped"
            return show_preview(ctx, run_dir, index, (width, height))

        argv = panel_generator_argv([*args, "--out", str(run_dir)])
        return jobs.JobSpec("preview", argv, on_done, env=child_env(), cwd=str(root),
                            label=f"preview: image {index}")


# --------------------------------------------------------------------------------------------
# the dataset browser


def browse_root(context: Any) -> Path:
    """The Browse Folder, or the Dataset section's Output Folder when it is empty."""
    folder = settings(context).browse_dir.strip()
    return Path(bpy.path.abspath(folder)) if folder else resolve_paths(context).dataset


def _clear_browse(state: Any) -> None:
    state.browse_total = state.browse_position = state.browse_annotated = state.browse_hidden = 0
    state.browse_file = state.browse_split = state.browse_categories = state.browse_error = ""


def show_browsed(context: Any) -> bool:
    """Show image Image of the Browse Folder in ``InstSeg Dataset`` and its facts in the panel; a
    folder without a dataset (or an unreadable image) is one line in the panel instead. False then."""
    s, state = settings(context), job_state(context)
    folder = browse_root(context)
    state.browse_folder = str(folder)
    try:
        data = browse.open_folder(folder)
        if s.browse_index >= len(data):
            s.browse_index = len(data) - 1  # its update shows that image
            return not state.browse_error
        image = data.image(s.browse_index)
        picture = overlay.draw_labels(image.rgb(), image.masks(), image.names())
    except (ValueError, OSError) as exc:
        _clear_browse(state)
        state.browse_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return False
    shown = overlay.to_shown_image(overlay.BROWSER_NAME, picture)
    overlay.show_in_image_editors(context, shown)
    counts = image.counts()
    _clear_browse(state)
    state.browse_total, state.browse_position = image.total, image.position
    state.browse_file, state.browse_split = image.file_name, image.split
    state.browse_annotated, state.browse_hidden = counts.annotated, sum(counts.hidden.values())
    state.browse_categories = counts.categories_line()
    return True


class INSTSEG_OT_browse_dataset(bpy.types.Operator):
    """Show an image of the Browse Folder with its masks (Previous / Next step through the folder)"""

    bl_idname = "instseg.browse_dataset"
    bl_label = "Show"

    step: IntProperty(  # type: ignore[valid-type]
        name="Step", default=0, options={"SKIP_SAVE"},
        description="Move this many images first (-1 previous, 1 next, 0 show the current one)")

    def execute(self, context: Any) -> set[OperatorReturn]:
        s = settings(context)
        s.browse_index = max(0, s.browse_index + self.step)  # its update shows the image
        error = job_state(context).browse_error
        if error:
            self.report({"ERROR"}, f"Browse: {error}")
            return {"CANCELLED"}
        return {"FINISHED"}


classes = (INSTSEG_OT_preview_labels, INSTSEG_OT_browse_dataset)
