"""Render one image: build its scene, settle visibility, render, annotate, write its files, then its record.

One image = build the scene from (config, per-image seed) -> settle visibility -> Cycles render
with the Object Index pass in memory -> visible + amodal masks -> files -> record (written last,
atomically). A record on disk means the image is complete, so the driver (``generate``) skips
finished indices on a rerun, and any process rendering an index writes the same record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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
    from .scene import builder, lens

    cfg = task.cfg
    parent: int | None = None
    if task.variants is not None:
        parent, variant = task.variants[index]
        seed = plan.variant_seed(parent, variant)
    else:
        seed = plan.image_seed(task.seed, index)
    w, h = cfg.render.resolution
    masks_only = cfg.render.masks_only
    timer = _Timer(timings)
    built = builder.build_scene(cfg, seed, build_appearance=not masks_only, parent_seed=parent)
    timer.lap("build")
    # looks of the RGB only: drawn from their own streams, so the labels are the same with them on or off
    lens_plan = lens.LensPlan() if masks_only else lens.LensPlan.sample(built.rngs["lens"], cfg.lens)
    look = sensor.NO_EFFECTS if masks_only else sensor.SensorSpec.sample(built.rngs["sensor"], cfg.sensor)
    alpha_cut = built.params.get("transparency", {}).get("alpha_cut", 0) > 0
    settings = cy.RenderSettings(w, h, cfg.render.samples, masks_only, cfg.render.max_bounces, cfg.render.depth,
                                 device=task.device, threads=task.threads, seed=seed,
                                 filter_width=1.5 if cfg.render.antialias and not masks_only else 0.01,
                                 backplate=built.backplate is not None,
                                 label_alpha=alpha_cut and cfg.materials.transparency_labels == "opaque",
                                 dof=lens_plan.dof, motion_blur=lens_plan.motion_blur, shutter=lens_plan.shutter or 0.5)

    def set_up_lens(label_passes: dict[str, Any]) -> None:  # after the labels, before the RGB render
        visible = [int(i) for i in np.unique(cy.index_map(label_passes)) if i > 0]
        summary = lens.apply(lens_plan, cfg.lens, built, visible, built.rngs["lens"])
        if summary:
            built.params["lens"] = summary

    # a render with DOF, motion blur or alpha holes cannot give the labels: they get their own render
    separate = lens_plan.active or alpha_cut
    labels, passes = _settle_and_render(built, cfg, settings, timer, separate_labels=separate,
                                        before_rgb=set_up_lens if lens_plan.active else None)
    ids = cy.index_map(labels)
    oc = cfg.objects
    annotations, hidden, fixups = annotate.build_annotations(built, ids, oc.min_visible_pixels,
                                                             oc.min_visible_fraction)
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
    output.write_rgb(task.out / file_name, sensor.develop(passes["Combined"], look, built.rngs["sensor"]),
                     jpeg_quality=look.jpeg_quality)
    if look.to_record():
        built.params["sensor"] = look.to_record()
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
        "split": split_of(index, cfg.output.val_fraction),
        "mask_file": mask_file,
        "depth_file": depth_file,
        "annotations": annotations,
        "hidden": hidden,
        "num_objects": len(built.objects),
        "amodal_fixups": fixups,
        "scene": built.params,
    }
    if parent is not None:
        record.update(parent_seed=parent, variant=variant)
    dataset.write_record(task.out, record)  # last: the record marks the image complete
    timer.lap("write_labels")
    return record


def _settle_and_render(built: Any, cfg: GeneratorConfig, settings: Any, timer: _Timer, *,
                       separate_labels: bool = False,
                       before_rgb: Callable[[dict[str, Any]], None] | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move fully hidden objects into view (a few tries, deterministic), then render; returns (labels, image).

    Label passes (Object Index, Depth) always come from a render with pixel-centre rays. Checks are
    1-sample index renders: at full size when they also give the labels (masks-only mode, or RGB
    with anti-aliasing, where the anti-aliased RGB render cannot), else at reduced size before one
    RGB render that gives both. Objects still hidden in the label render are recorded in hidden[].
    ``separate_labels`` asks for the full-size label render whatever the filter (the RGB render has
    DOF, motion blur or alpha holes); ``before_rgb(labels)`` runs between the label and the RGB render.
    """
    import bpy
    import numpy as np

    from .render import cycles as cy
    from .scene import builder

    oc = cfg.objects
    check = dict(vars(settings))
    # in masks-only mode the check render also gives the (clay) image, so it keeps its shading
    check.update(masks_only=True, filter_width=0.01, label_only=not settings.masks_only, backplate=False, dof=False,
                 motion_blur=False)
    check_settings = cy.RenderSettings(**check)
    w, h = settings.width, settings.height
    labels_from_check = settings.masks_only or settings.filter_width != 0.01
    # the checks' size never depends on separate_labels: the same objects move with the looks on or off
    percentage = 100 if labels_from_check else (50 if max(w, h) <= 256 else 25)
    last: dict[str, Any] | None = None
    if not oc.allow_hidden and oc.max_resample > 0 and built.objects:
        rng = built.rngs["resample"]
        for attempt in range(oc.max_resample + 1):
            cy.configure(check_settings, percentage=percentage)
            passes = cy.render()
            # an object counts as seen with min_visible_pixels at full size (the check may be smaller)
            counts = np.bincount(cy.index_map(passes).ravel())
            need = oc.min_visible_pixels * (percentage / 100.0) ** 2
            missing = [o for o in built.objects if o.instance_id >= len(counts) or counts[o.instance_id] < need]
            if not missing or attempt == oc.max_resample:
                last = passes
                break
            for so in missing:
                builder.move_object(so, built.objects, cfg, rng, built.camera)
            bpy.context.view_layer.update()
    if (labels_from_check and last is None) or (separate_labels and (last is None or percentage != 100)):
        cy.configure(check_settings)
        last = cy.render()
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
    passes = cy.render()
    timer.lap("render")
    if labels_from_check:
        assert last is not None
        return last, passes
    return passes, passes
