"""The "InstSeg" tab in the 3D Viewport sidebar: Dataset, Training, Evaluation, Prediction.

Draw code only reads properties and places operator buttons; all work happens in ``ops``.
"""

from __future__ import annotations

from typing import Any

import bpy

from .. import asset_categories, config_props
from ..ops import jobs
from .. import wording
from . import overlay

CATEGORY = "InstSeg"
MAX_ROWS = 8  # list lengths shown in the sidebar; the report has the rest


def draw_progress(layout: Any, factor: float, text: str) -> None:
    """``UILayout.progress`` exists from Blender 4.0; older builds get a text percentage."""
    if hasattr(layout, "progress"):
        layout.progress(factor=factor, type="BAR", text=text)
    else:
        layout.label(text=f"{text} ({factor * 100:.0f}%)")


def _eta(seconds: float) -> str:
    if seconds < 0:
        return ""
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}:{s:02d} left" if m < 60 else f"{m // 60}h{m % 60:02d} left"


def draw_job(layout: Any, context: Any, kinds: set[str]) -> None:
    """Progress, loss/ETA, cancel button, last result or error, when the job belongs to this section."""
    state = context.window_manager.instseg_job
    if state.kind not in kinds:
        return
    if state.running:
        text = state.status
        if state.has_loss:
            text += f"  loss {state.loss:.3f}"
        eta = _eta(state.eta_s)
        if eta:
            text += f"  {eta}"
        draw_progress(layout, state.progress, text)
        layout.operator("instseg.cancel_job", icon="CANCEL")
    elif state.last_error:
        box = layout.box()
        box.label(text=f"{state.kind} failed", icon="ERROR")
        for chunk in _wrap(wording.ui_message(state.kind, state.last_error), 60):
            box.label(text=chunk)
    elif state.summary:
        layout.label(text=state.summary, icon="CHECKMARK")


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines[:6]


class _Base(bpy.types.Panel):
    """Shared placement; never registered itself."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class INSTSEG_PT_main(_Base):
    bl_idname = "INSTSEG_PT_main"
    bl_label = "Instance Segmentation"

    def draw(self, context: Any) -> None:
        layout = self.layout
        state = context.window_manager.instseg_job
        row = layout.row(align=True)
        row.operator("instseg.check_python", icon="CONSOLE")
        if jobs.is_running() or state.running:
            row.operator("instseg.cancel_job", text="", icon="CANCEL")


def draw_sources(layout: Any, s: Any) -> None:
    """Where the objects come from, the categories an asset folder gives, placement, distractors."""
    col = layout.column()
    col.prop(s, "object_source")
    sub = col.column()
    sub.enabled = s.object_source == "FOLDER"
    sub.prop(s, "assets_dir")
    if s.object_source == "FOLDER":
        box = col.box()
        for line in asset_folder_summary(s.assets_dir):
            box.label(text=line)
        draw_asset_category_settings(col, s)
    sub = col.column()
    sub.enabled = s.object_source == "COLLECTIONS"
    sub.prop(s, "blend_collection")
    if s.object_source == "COLLECTIONS":
        box = col.box()
        for line in collections_summary(bpy.context.scene, s.blend_collection):
            box.label(text=line)
        draw_category_settings(col, bpy.context.scene, s.blend_collection)
    col.prop(s, "placement")
    col.prop(s, "real_size")
    col.prop(s, "distractors_dir")
    sub = col.column()
    sub.enabled = bool(s.distractors_dir.strip())
    sub.prop(s, "max_distractors")


def draw_config_sections(layout: Any, s: Any, sections: tuple[str, ...]) -> None:
    """The generated settings of these config sections (config_props), then what only a config file sets."""
    generator = s.generator
    for section in sections:
        group = getattr(generator, section)
        col = layout.column(heading=section.title())
        for name in config_props.fields(section):
            col.prop(group, name)
        only = config_props.config_only(section)
        if only:
            row = col.row()
            row.label(text=f"Config file only (Base Config): {', '.join(only)}", icon="INFO")


# hints under a group's settings: where one setting decides another's effect
GROUP_HINTS: dict[str, tuple[str, ...]] = {
    "world": ("A photo needs a camera looking down (no horizon in the frame):",
              "Camera > Elevation decides how many images get one"),
}


def _make_group_panel(group_id: str, title: str, sections: tuple[str, ...]) -> type:
    """A collapsed sub-panel of Dataset drawing ``sections`` (and, for objects, the source UI)."""

    def draw(self: Any, context: Any) -> None:
        layout = self.layout
        s = context.scene.instseg
        layout.use_property_split = True
        layout.use_property_decorate = False
        if group_id == "objects":
            draw_sources(layout, s)
        draw_config_sections(layout, s, sections)
        for line in GROUP_HINTS.get(group_id, ()):
            layout.label(text=line)

    return type(f"INSTSEG_PT_dataset_{group_id}", (_Base,), {
        "bl_idname": f"INSTSEG_PT_dataset_{group_id}", "bl_label": title, "bl_parent_id": "INSTSEG_PT_dataset",
        "bl_options": {"DEFAULT_CLOSED"}, "draw": draw,
        "__doc__": f"Dataset > {title}: the generator's {', '.join(sections)} settings"})


def _per_category(shapes: dict[str, str], categories: list[str], noun: str, most: int) -> list[str]:
    """'<category>: <n> <noun>(s)' for the first ``most`` categories, then how many more."""
    counts: dict[str, int] = {}
    for category in shapes.values():
        counts[category] = counts.get(category, 0) + 1
    lines = [f"{name}: {counts[name]} {noun}{'s' if counts[name] != 1 else ''}" for name in categories[:most]]
    if len(categories) > most:
        lines.append(f"... and {len(categories) - most} more")
    return lines


def collections_summary(scene: Any, parent: str, most: int = 8) -> list[str]:
    """The categories this file's collections give (as the generator will read the copy), with
    their template counts and roles, or the one-line reason they cannot be used."""
    from ..scene import blend_source

    try:
        groups, where = blend_source.parent_groups(bpy.data.collections, [scene], parent.strip())
        spec = blend_source.describe(groups, where)
    except ValueError as exc:
        return [str(exc)]
    lines = [f"{len(spec.categories)} categories from {where}"]
    lines += _per_category(spec.shapes, spec.categories, "template", most)
    if spec.distractors:
        lines.append(f"distractors: {len(spec.distractors)} templates")
    return lines


def draw_category_options(box: Any, group: Any) -> None:
    """A target category's Own Count + Count, Placement, Size and Physics: the same widgets for a
    category collection (``Collection.instseg``) and an Asset Folder's category."""
    row = box.row(align=True)
    row.prop(group, "own_count", text="Count")
    sub = row.row(align=True)
    sub.enabled = group.own_count
    sub.prop(group, "count", text="")
    grid = box.grid_flow(columns=3, align=True)
    grid.prop(group, "placement", text="")
    grid.prop(group, "size", text="")
    grid.prop(group, "physics", text="")


def draw_category_settings(layout: Any, scene: Any, parent: str) -> None:
    """One box per category collection with its role and, for targets, count, placement, size and
    physics: the collection's ``instseg_*`` custom properties, through ``Collection.instseg``."""
    from ..scene import blend_source

    try:
        groups, _where = blend_source.parent_groups(bpy.data.collections, [scene], parent.strip())
    except ValueError:
        return  # collections_summary already says why
    for coll in groups:
        box = layout.box()
        row = box.row()
        row.label(text=coll.name, icon="OUTLINER_COLLECTION")
        row.prop(coll.instseg, "role", text="")
        if coll.instseg.role != "target":
            continue
        draw_category_options(box, coll.instseg)


MAX_CATEGORY_BOXES = 24  # an Asset Folder's boxes drawn; the rest keep the defaults


def draw_asset_category_settings(layout: Any, s: Any, most: int = MAX_CATEGORY_BOXES) -> None:
    """One box per category of the Asset Folder (``Scene.instseg.asset_categories``), the first
    ``most`` of a huge folder, then how many more keep the defaults. Draw code cannot add items:
    categories added to the folder since it was chosen get a button that does."""
    categories = asset_categories.folder_categories(s.assets_dir)
    new = 0
    for category in categories[:most]:
        item = s.asset_categories.get(category)
        if item is None:
            new += 1
            continue
        box = layout.box()
        box.label(text=category, icon="FILE_FOLDER")
        draw_category_options(box, item)
    if new:
        layout.operator("instseg.add_asset_categories", text=f"Settings for {new} New Categories", icon="ADD")
    if len(categories) > most:
        layout.label(text=f"... and {len(categories) - most} more categories (they keep the defaults)")


def asset_folder_summary(folder: str, most: int = 8) -> list[str]:
    """What the folder gives, as the generator will read it: one line per category with its file
    count, or the one-line reason it cannot be used (the scan is cached, asset_categories.scan)."""
    if not folder.strip():
        return ["Choose a folder: one subfolder per category"]
    try:
        shapes = asset_categories.scan(folder)
    except ValueError as exc:
        return [str(exc)]
    categories = sorted(set(shapes.values()))
    lines = [f"{len(categories)} categories, {len(shapes)} files"]
    lines += _per_category(shapes, categories, "file", most)
    return lines


class INSTSEG_PT_dataset(_Base):
    bl_idname = "INSTSEG_PT_dataset"
    bl_label = "Dataset"
    bl_parent_id = "INSTSEG_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.layout
        s = context.scene.instseg
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(s, "dataset_dir")
        col = layout.column(align=True)
        col.prop(s, "num_images")
        col.prop(s, "seed")
        col = layout.column(align=True)
        col.prop(s, "resolution")
        col.prop(s, "resolution_height")
        col = layout.column(align=True)
        col.prop(s, "min_objects", text="Objects Min")
        col.prop(s, "max_objects", text="Max")
        col = layout.column()
        col.prop(s, "val_fraction")
        col.prop(s, "masks_only")
        sub = col.column()
        sub.enabled = not s.masks_only
        sub.prop(s, "samples")
        layout.prop(s, "config_file")
        row = layout.row(align=True)
        row.operator("instseg.load_config", icon="FILEBROWSER")
        row.operator("instseg.save_config", icon="FILE_TICK")
        row.operator("instseg.reset_config", text="", icon="LOOP_BACK")
        layout.operator("instseg.generate_dataset", icon="RENDER_STILL")
        draw_job(layout, context, {"generate"})
        draw_preview(layout, context)
        draw_browser(layout, context)


def draw_preview(layout: Any, context: Any) -> None:
    """Preview Labels / Next Seed, the preview's progress or error, and the last preview's counts."""
    s = context.scene.instseg
    state = context.window_manager.instseg_job
    box = layout.box()
    box.label(text="Preview", icon="HIDE_OFF")
    box.prop(s, "preview_index")
    row = box.row(align=True)
    row.operator("instseg.preview_labels", icon="IMAGE_DATA")
    row.operator("instseg.preview_labels", text="Next Seed", icon="FORWARD").step = 1
    draw_job(box, context, {"preview"})
    if not state.has_preview:
        return
    col = box.column(align=True)
    col.label(text=f"Image {state.preview_index} (seed {state.preview_seed}), {state.preview_size}")
    col.label(text=f"{state.preview_annotated} labelled: {state.preview_categories}")
    col.label(text=f"Hidden: {state.preview_outside_frame} out of frame, {state.preview_occluded} occluded, "
                   f"{state.preview_too_little_visible} too little visible")
    col.label(text=f"Small (under 32x32 px in the dataset): {state.preview_small}")
    col.label(text=f"Image Editor: {overlay.PREVIEW_NAME}", icon="INFO")


def draw_browser(layout: Any, context: Any) -> None:
    """The dataset browser: folder, Previous / index / Next, and the shown image's facts or one error line."""
    from ..ops.preview import browse_root

    s = context.scene.instseg
    state = context.window_manager.instseg_job
    box = layout.box()
    box.label(text="Browse Dataset", icon="FILE_IMAGE")
    box.prop(s, "browse_dir")
    if not s.browse_dir.strip():
        box.label(text=f"-> {browse_root(context)}", icon="INFO")
    row = box.row(align=True)
    row.use_property_split = False  # arrows, "Image: N" and Show on one line
    row.operator("instseg.browse_dataset", text="", icon="TRIA_LEFT").step = -1
    row.prop(s, "browse_index")
    row.operator("instseg.browse_dataset", text="", icon="TRIA_RIGHT").step = 1
    row.operator("instseg.browse_dataset", text="Show")
    if state.browse_error:
        row = box.row()
        row.alert = True
        row.label(text=state.browse_error, icon="ERROR")
    elif state.browse_total:
        col = box.column(align=True)
        col.label(text=f"{state.browse_position + 1} of {state.browse_total}: {state.browse_file or '(no image file)'}")
        split = f"split {state.browse_split}, " if state.browse_split else ""
        col.label(text=f"{split}{state.browse_annotated} annotations, {state.browse_hidden} hidden")
        col.label(text=state.browse_categories)
        col.label(text=f"Image Editor: {overlay.BROWSER_NAME}", icon="INFO")


GROUP_PANELS: tuple[type, ...] = tuple(_make_group_panel(*group) for group in config_props.GROUPS)


_RENDERED_TYPES = ("MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME")


def annotate_summary(scene: Any, parent: str, prop: str = "instseg_category") -> list[str]:
    """What Annotate This Scene labels, as annotate-scene reads the file: the category collections
    of ``parent`` (default InstSeg) with their roles and object counts, the objects carrying the
    category custom property, and how many objects have no category."""
    from ..scene import blend_source

    wanted = parent.strip() or blend_source.DEFAULT_PARENT
    root = bpy.data.collections.get(wanted)
    lines: list[str] = []
    in_collection: set[str] = set()
    if root is None:
        lines.append(f"no collection {wanted!r}: categories from the {prop!r} property only")
    else:
        lines.append(f"categories from collection {wanted!r}:")
        for coll in list(root.children)[:MAX_ROWS]:
            role = str(coll.get("instseg_role", "target"))
            n = len(coll.all_objects)
            lines.append(f"  {coll.name}: {role}, {n} object{'s' if n != 1 else ''}")
        for coll in root.children:
            in_collection.update(obj.name for obj in coll.all_objects)
        if len(root.children) > MAX_ROWS:
            lines.append(f"  ... and {len(root.children) - MAX_ROWS} more")
    named = [obj for obj in scene.objects if prop in obj.keys()]
    lines.append(f"{len(named)} object{'s' if len(named) != 1 else ''} with the {prop!r} property")
    rest = [obj for obj in scene.objects if obj.name not in in_collection and prop not in obj.keys()
            and (obj.type in _RENDERED_TYPES or obj.instance_type == "COLLECTION")]
    lines.append(f"{len(rest)} without a category")
    return lines


class INSTSEG_PT_annotate(_Base):
    """Annotate This Scene: the artist's own scene or animation, labelled as it is"""

    bl_idname = "INSTSEG_PT_annotate"
    bl_label = "Annotate This Scene"
    bl_parent_id = "INSTSEG_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        from ..ops.annotate import annotate_out

        layout = self.layout
        s = context.scene.instseg
        scene = context.scene
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(s, "annotate_dir")
        if not s.annotate_dir.strip():
            layout.label(text=f"-> {annotate_out(context, '')}", icon="INFO")
        col = layout.column(align=True)
        col.prop(s, "annotate_frame_start")
        col.prop(s, "annotate_frame_end")
        first = s.annotate_frame_start or scene.frame_start
        last = s.annotate_frame_end or scene.frame_end
        col.label(text=f"frames {first}-{last}")
        layout.prop(s, "annotate_masks_only")
        sub = layout.column()
        sub.enabled = not s.annotate_masks_only
        sub.prop(s, "annotate_samples")
        layout.prop(s, "annotate_uncategorized")
        box = layout.box()
        for line in annotate_summary(scene, s.blend_collection):
            box.label(text=line)
        if scene.camera is None:
            row = layout.row()
            row.alert = True
            row.label(text="The scene has no active camera: set Scene > Camera", icon="ERROR")
        op = layout.operator("instseg.annotate_scene", icon="RENDER_ANIMATION")
        op.out, op.frame_start, op.frame_end = s.annotate_dir, s.annotate_frame_start, s.annotate_frame_end
        op.masks_only, op.samples, op.uncategorized = s.annotate_masks_only, s.annotate_samples, s.annotate_uncategorized
        op.blend_collection = s.blend_collection
        draw_job(layout, context, {"annotate"})


class INSTSEG_PT_training(_Base):
    bl_idname = "INSTSEG_PT_training"
    bl_label = "Training"
    bl_parent_id = "INSTSEG_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.layout
        s = context.scene.instseg
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(s, "run_dir")
        col = layout.column(align=True)
        col.prop(s, "epochs")
        sub = col.column(align=True)
        sub.enabled = s.epochs == 0
        sub.prop(s, "train_minutes")
        layout.prop(s, "resume_training")
        layout.prop(s, "train_init")
        layout.prop(s, "device")
        layout.operator("instseg.train", icon="PLAY")
        draw_job(layout, context, {"train"})
        box = layout.box()
        box.label(text="Hard-Scene Mining", icon="VIEWZOOM")
        box.prop(s, "mining_dir")
        col = box.column(align=True)
        col.prop(s, "mining_budget")
        col.prop(s, "mining_steps")
        box.prop(s, "mining_strategy")
        box.prop(s, "heldout_dir")
        box.operator("instseg.mine_hard_scenes", icon="PLAY")
        draw_job(box, context, {"mine"})


class INSTSEG_PT_evaluation(_Base):
    bl_idname = "INSTSEG_PT_evaluation"
    bl_label = "Evaluation"
    bl_parent_id = "INSTSEG_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.layout
        s = context.scene.instseg
        state = context.window_manager.instseg_job
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(s, "checkpoint")
        layout.prop(s, "predictions_path")
        if s.predictions_path.strip():
            # the AP numbers use every score; the cut only sets the report's precision/recall and worst images
            layout.label(text=f"Report's precision/recall at Prediction's Score Threshold ({s.score_threshold:.2f})",
                         icon="INFO")
        layout.operator("instseg.evaluate", icon="GRAPH")
        draw_job(layout, context, {"evaluate"})
        if state.has_metrics:
            box = layout.box()
            col = box.column(align=True)
            col.label(text=f"Mask AP       {state.mask_ap:.3f}")
            col.label(text=f"Mask AP50     {state.mask_ap50:.3f}")
            col.label(text=f"Boundary AP   {state.boundary_ap:.3f}")
            if state.eval_source:
                row = box.row()
                row.alert = state.eval_on_training_images
                row.label(text=f"On {state.eval_source}", icon="ERROR" if state.eval_on_training_images else "INFO")
            if len(state.worst_images):
                box.label(text="Worst images", icon="IMAGE_DATA")
                col = box.column(align=True)
                for item in list(state.worst_images)[:MAX_ROWS]:
                    col.label(text=f"{item.file_name or item.image_id}: {item.n_missed} missed, "
                                   f"{item.n_false_pos} false")
            box.operator("instseg.open_report", icon="FILE_FOLDER")


class INSTSEG_PT_prediction(_Base):
    bl_idname = "INSTSEG_PT_prediction"
    bl_label = "Prediction"
    bl_parent_id = "INSTSEG_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.layout
        s = context.scene.instseg
        state = context.window_manager.instseg_job
        layout.use_property_split = True
        layout.use_property_decorate = False
        col = layout.column(align=True)
        col.prop(s, "auto_threshold")
        row = col.row()
        row.active = not s.auto_threshold
        row.prop(s, "score_threshold")
        col.prop(s, "match_iou_threshold")
        layout.prop(s, "predict_samples")
        layout.prop(s, "show_in_camera")
        row = layout.row(align=True)
        if s.predict_frames:
            row.operator("instseg.predict_frames", icon="RENDER_ANIMATION")
        else:
            row.operator("instseg.predict_view", icon="VIEW_CAMERA")
        row.prop(s, "predict_frames", toggle=True, icon="SEQUENCE")
        row = layout.row(align=True)
        row.active = s.predict_frames
        row.prop(s, "predict_frame_start")
        row.prop(s, "predict_frame_end")
        draw_job(layout, context, {"predict"})
        row = layout.row(align=True)
        row.operator("instseg.clear_overlay", icon="X")
        row.operator("instseg.restore_selection", icon="RESTRICT_SELECT_OFF")
        if len(state.matched) or len(state.unmatched) or len(state.missed):
            box = layout.box()
            box.label(text=f"Matched ({len(state.matched)})", icon="CHECKMARK")
            col = box.column(align=True)
            for row_ in list(state.matched)[:MAX_ROWS]:
                col.label(text=f"{row_.object_name}: {row_.category} {row_.score:.2f} (IoU {row_.iou:.2f})")
            box.label(text=f"Unmatched predictions ({len(state.unmatched)})", icon="QUESTION")
            col = box.column(align=True)
            for row_ in list(state.unmatched)[:MAX_ROWS]:
                col.label(text=f"#{row_.index}: {row_.category} {row_.score:.2f}")
            box.label(text=f"Missed objects ({len(state.missed)})", icon="GHOST_ENABLED")
            col = box.column(align=True)
            for ref in list(state.missed)[:MAX_ROWS]:
                col.label(text=ref.object_name)
        if state.frames_summary:
            draw_frames_result(layout, state, context.scene.frame_current)


def draw_frames_result(layout: Any, state: Any, frame: int) -> None:
    """After Predict Frames: the summary's top lines and the matches of the current frame."""
    box = layout.box()
    lines = state.frames_summary.splitlines()
    box.label(text=lines[0], icon="SEQUENCE")
    col = box.column(align=True)
    for line in lines[1:]:
        col.label(text=line)
    rows = [r for r in state.frame_matched if r.frame == frame]
    box.label(text=f"Frame {frame}: matched ({len(rows)})", icon="CHECKMARK")
    col = box.column(align=True)
    for row_ in rows[:MAX_ROWS]:
        col.label(text=f"{row_.object_name}: {row_.category} {row_.score:.2f} (IoU {row_.iou:.2f})")


classes = (INSTSEG_PT_main, INSTSEG_PT_dataset, *GROUP_PANELS, INSTSEG_PT_annotate, INSTSEG_PT_training,
           INSTSEG_PT_evaluation, INSTSEG_PT_prediction)
