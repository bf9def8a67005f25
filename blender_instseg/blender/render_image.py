"""Render one image: build its scene, settle visibility, render, annotate, write its files, then its record.

One image = build the scene from (config, per-image seed) -> settle visibility -> Cycles render
with the Object Index pass in memory -> visible + amodal masks -> files -> record (written last,
atomically). A record on disk means the image is complete, so the driver (``generate``) skips
finished indices on a rerun, and any process rendering an index writes the same record.

In a sequence (``sequence.frames`` = F > 1) image ``i`` is frame ``i % F`` of scene ``i // F``: the
scene is built from its own seed (``plan.scene_seed``) and its visibility settled once, at frame 0;
each frame poses it (``scene/motion.py``, absolute in the frame number) and renders it without
moving hidden objects, so an object keeps its id in every frame and is in hidden[] where it is out
of view. The built scene is kept for the process's next index of the same scene; a process that
starts at a later frame builds and settles the scene the same way first, so it writes the same bytes.
The frame's own seed (``plan.image_seed``, = the scene seed at frame 0) drives its Cycles seed and
the per-frame looks (lens, sensor).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core import plan
from ..core.formats import dataset
from ..core.genconfig import GeneratorConfig


@dataclass
class RenderTask:
    """What one process renders: the settings, the dataset folder and the images' seeds."""

    cfg: GeneratorConfig
    out: Path
    seed: int
    num_images: int
    threads: int = 0
    device: str = "CPU"
    variants: list[tuple[int, int]] | None = None  # image index -> (parent seed, variant number)
    scene: "SequenceScene | None" = field(default=None, repr=False)  # the sequence scene in Blender now
    ahead: Any = field(default=None, repr=False)  # render.annotate.AmodalAhead, made on first use


@dataclass
class SequenceScene:
    """One sequence's scene as built and settled (frame 0), with its motion."""

    index: int  # the scene number (image index // frames)
    seed: int
    built: Any  # builder.BuiltScene
    rest: Any  # motion.RestPose
    motion: Any  # motion.MotionPlan


def split_of(index: int, val_fraction: float) -> str:
    """Deterministic by index, evenly spread, independent of shards: val when floor((i+1)f) > floor(i f)."""
    if val_fraction <= 0:
        return "train"
    import math

    return "val" if math.floor((index + 1) * val_fraction) > math.floor(index * val_fraction) else "train"


class _Timer:
    """Accumulates wall time per phase into a dict when one is given (benchmarks); a no-op otherwise."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.sink is not None:
            now = time.perf_counter()
            self.sink[name] = self.sink.get(name, 0.0) + now - self.t
            self.t = now


def render_index(task: RenderTask, index: int, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Render image ``index`` and write its files, then its record; returns the record.

    ``timings``, when given, accumulates seconds per phase (build, check, render, annotate, write).
    """
    import numpy as np

    from ..core import sensor
    from .render import annotate, output
    from .render import cycles as cy
    from .scene import builder, lens, meshes

    cfg = task.cfg
    meshes.sync_parked(cfg.render.masks_only)  # only masks-only renders keep their render data (render/cycles.py)
    if task.ahead is None:
        task.ahead = annotate.AmodalAhead()
    parent: int | None = None
    if task.variants is not None:
        parent, variant = task.variants[index]
        seed = plan.variant_seed(parent, variant)
    else:
        seed = plan.image_seed(task.seed, index)
    w, h = cfg.render.resolution
    masks_only = cfg.render.masks_only
    timer = _Timer(timings)
    frames = cfg.sequence.frames
    sequence: dict[str, Any] = {}
    if frames == 1:
        built = builder.build_scene(cfg, seed, build_appearance=not masks_only, parent_seed=parent)
        rngs = built.rngs
    else:
        from .scene import motion

        scene_index, frame = plan.scene_of(index, frames)
        state = _sequence_scene(task, scene_index, timer)
        built = state.built
        motion.pose(built, state.rest, state.motion, frame, cfg.sequence.fps)
        rngs = builder.make_rngs(seed)  # this frame's looks; at frame 0 the scene's own streams
        sequence = {"video_id": scene_index + 1, "frame_index": frame, "scene_seed": state.seed}
    params = dict(built.params)  # this image's summary (a sequence's frames share built.params)
    timer.lap("build")
    # looks of the RGB only: drawn from their own streams, so the labels are the same with them on or off
    look_cfg = cfg.plain_look() if params.get("plain_look") else cfg  # (looks.plain_probability)
    lens_plan = lens.LensPlan() if masks_only else lens.LensPlan.sample(rngs["lens"], look_cfg.lens)
    look = sensor.NO_EFFECTS if masks_only else sensor.SensorSpec.sample(rngs["sensor"], look_cfg.sensor)
    settings = _render_settings(task, built, seed, lens_plan)

    def set_up_lens(label_passes: dict[str, Any]) -> None:  # after the labels, before the RGB render
        visible = [int(i) for i in np.unique(cy.index_map(label_passes)) if i > 0]
        summary = lens.apply(lens_plan, cfg.lens, built, visible, rngs["lens"])
        if summary:
            params["lens"] = summary

    # a render with DOF, motion blur or alpha holes cannot give the labels: they get their own render
    separate = lens_plan.active or _has_alpha_cut(built)
    labels, passes = _settle_and_render(built, cfg, settings, timer, separate_labels=separate,
                                        before_rgb=set_up_lens if lens_plan.active else None,
                                        resample=frames == 1, ahead=task.ahead)
    ids = cy.index_map(labels)
    oc = cfg.objects
    annotations, hidden, fixups = annotate.build_annotations(built, ids, oc.min_visible_pixels,
                                                             oc.min_visible_fraction, task.ahead)
    dropped = annotate.too_little_visible_ids(hidden)
    if dropped:
        ids[np.isin(ids, dropped)] = 0  # background: no mask holds an id without an annotation
    timer.lap("annotate")

    stem = f"{index:06d}"
    file_name = f"images/{stem}{look.suffix}"
    mask_file = f"masks/{stem}.png"
    depth_file = f"depth/{stem}.exr" if cfg.render.depth else None
    if built.backplate is not None:  # the photo goes under the render before the sensor's effects
        from .scene import backplate

        passes = backplate.composite_passes(passes, built.backplate, w, h)
    output.write_rgb(task.out / file_name, sensor.develop(passes["Combined"], look, rngs["sensor"]),
                     jpeg_quality=look.jpeg_quality)
    if look.to_record():
        params["sensor"] = look.to_record()
    timer.lap("write_rgb")
    output.write_id_map(task.out / mask_file, ids)
    if depth_file is not None:
        depth = cy.depth_map(labels)
        output.write_depth(task.out / depth_file, depth if depth is not None else np.zeros((h, w), np.float32))
    record = {
        "index": index,
        "seed": seed,
        "file_name": file_name,
        "width": w,
        "height": h,
        "split": split_of(index // frames, cfg.output.val_fraction),  # a video's frames share its split
        "mask_file": mask_file,
        "depth_file": depth_file,
        "annotations": annotations,
        "hidden": hidden,
        "num_objects": len(built.objects),
        "amodal_fixups": fixups,
        "scene": params,
    }
    if parent is not None:
        record.update(parent_seed=parent, variant=variant)
    if sequence:  # identities over time: an object's instance id is its track id in every frame
        record.update(sequence)
        for entry in (*annotations, *hidden):
            entry["track_id"] = entry["instance_id"]
    dataset.write_record(task.out, record)  # last: the record marks the image complete
    timer.lap("write_labels")
    return record


def _has_alpha_cut(built: Any) -> bool:
    return bool(built.params.get("transparency", {}).get("alpha_cut", 0) > 0)


def _render_settings(task: RenderTask, built: Any, seed: int, lens_plan: Any) -> Any:
    """The image's Cycles settings (``cycles.RenderSettings``) with the lens effects of ``lens_plan``."""
    from .render import cycles as cy

    cfg = task.cfg
    w, h = cfg.render.resolution
    masks_only = cfg.render.masks_only
    return cy.RenderSettings(w, h, cfg.render.samples, masks_only, cfg.render.max_bounces, cfg.render.depth,
                             device=task.device, threads=task.threads, seed=seed,
                             filter_width=1.5 if cfg.render.antialias and not masks_only else 0.01,
                             backplate=built.backplate is not None,
                             label_alpha=_has_alpha_cut(built) and cfg.materials.transparency_labels == "opaque",
                             dof=lens_plan.dof, motion_blur=lens_plan.motion_blur, shutter=lens_plan.shutter or 0.5)


def _sequence_scene(task: RenderTask, scene_index: int, timer: _Timer) -> SequenceScene:
    """The scene of a sequence in Blender: kept from this process's previous frame, or built from the
    scene seed, its hidden objects moved into view at frame 0 as a still image's are, its motion drawn."""
    from .scene import builder, lens, motion

    if task.scene is not None and task.scene.index == scene_index:
        return task.scene
    task.scene = None
    cfg = task.cfg
    seed = plan.scene_seed(task.seed, scene_index, cfg.sequence.frames)
    falling = cfg.sequence.physics == "falling"
    built = builder.build_scene(cfg, seed, build_appearance=not cfg.render.masks_only, record_fall=falling)
    settings = _render_settings(task, built, seed, lens.LensPlan())
    check_settings, percentage, _ = _check_settings(settings)
    _move_hidden_into_view(built, cfg, check_settings, percentage, task.ahead)
    timer.lap("check")
    move = motion.MotionPlan.sample(built.rngs["motion"], cfg.sequence, len(built.objects))
    built.params["motion"] = move.summary()
    task.scene = SequenceScene(scene_index, seed, built, motion.rest_pose(built, falling), move)
    return task.scene


def _check_settings(settings: Any) -> tuple[Any, int, bool]:
    """(settings of the 1-sample index check renders, their size in percent, whether they give the labels)."""
    from .render import cycles as cy

    check = dict(vars(settings))
    # in masks-only mode the check render also gives the (clay) image, so it keeps its shading
    check.update(masks_only=True, filter_width=0.01, label_only=not settings.masks_only, backplate=False, dof=False,
                 motion_blur=False)
    w, h = settings.width, settings.height
    labels_from_check = settings.masks_only or settings.filter_width != 0.01
    # the checks' size never depends on separate_labels: the same objects move with the looks on or off
    percentage = 100 if labels_from_check else (50 if max(w, h) <= 256 else 25)
    return cy.RenderSettings(**check), percentage, labels_from_check


def _move_hidden_into_view(built: Any, cfg: GeneratorConfig, check_settings: Any, percentage: int,
                           ahead: Any = None) -> dict[str, Any] | None:
    """Move fully hidden objects into view, a few tries (deterministic: the "resample" stream); returns
    the last check render's passes (None when nothing was checked). ``ahead``
    (``annotate.AmodalAhead``) computes the amodal masks during full-size checks, which may give the labels."""
    import bpy
    import numpy as np

    from .render import cycles as cy
    from .scene import builder

    oc = cfg.objects
    if oc.allow_hidden or oc.max_resample <= 0 or not built.objects:
        return None
    rng = built.rngs["resample"]
    for attempt in range(oc.max_resample + 1):
        cy.configure(check_settings, percentage=percentage)
        passes = _render(built, ahead if percentage == 100 else None)
        # an object counts as seen with min_visible_pixels at full size (the check may be smaller)
        counts = np.bincount(cy.index_map(passes).ravel())
        need = oc.min_visible_pixels * (percentage / 100.0) ** 2
        missing = [o for o in built.objects if o.instance_id >= len(counts) or counts[o.instance_id] < need]
        if not missing or attempt == oc.max_resample:
            return passes
        for so in missing:
            builder.move_object(so, built.objects, cfg, rng, built.camera)
        bpy.context.view_layer.update()
    return None


def _render(built: Any, ahead: Any) -> dict[str, Any]:
    """``cycles.render()``, with ``ahead`` (``annotate.AmodalAhead``, or None) computing the amodal
    masks of the scene as it stands meanwhile."""
    from .render import cycles as cy

    if ahead is not None:
        ahead.start(built)
    return cy.render()


def _settle_and_render(built: Any, cfg: GeneratorConfig, settings: Any, timer: _Timer, *,
                       separate_labels: bool = False,
                       before_rgb: Callable[[dict[str, Any]], None] | None = None, resample: bool = True,
                       ahead: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move fully hidden objects into view (a few tries, deterministic), then render; returns (labels, image).

    Label passes (Object Index, Depth) always come from a render with pixel-centre rays. Checks are
    1-sample index renders: at full size when they also give the labels (masks-only mode, or RGB
    with anti-aliasing, where the anti-aliased RGB render cannot), else at reduced size before one
    RGB render that gives both. Objects still hidden in the label render are recorded in hidden[].
    ``separate_labels`` asks for the full-size label render whatever the filter (the RGB render has
    DOF, motion blur or alpha holes); ``before_rgb(labels)`` runs between the label and the RGB render.
    ``resample=False`` moves nothing (a sequence's frames: the scene was settled at frame 0).
    ``ahead`` (``annotate.AmodalAhead``) computes the amodal masks while Cycles renders.
    """
    from .render import cycles as cy

    check_settings, percentage, labels_from_check = _check_settings(settings)
    last = _move_hidden_into_view(built, cfg, check_settings, percentage, ahead) if resample else None
    if (labels_from_check and last is None) or (separate_labels and (last is None or percentage != 100)):
        cy.configure(check_settings)
        last = _render(built, ahead)
    labels_from_check = labels_from_check or separate_labels
    if settings.masks_only:
        assert last is not None
        timer.lap("render")
        return last, last
    timer.lap("check")
    if before_rgb is not None:
        assert last is not None, "before_rgb needs the label render (separate_labels)"
        before_rgb(last)
    cy.configure(settings)
    passes = _render(built, ahead)
    timer.lap("render")
    if labels_from_check:
        assert last is not None
        return last, passes
    return passes, passes
