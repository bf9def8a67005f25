"""Settings (saved with the .blend, on ``Scene.instseg``) and job state (runtime, on the WindowManager).

Settings live on the scene so a project file remembers its dataset folder and thresholds; the
state of a running child lives on the WindowManager, which is not saved, so reopening a file never
shows a stale "running" job. Empty folder settings mean "a default under the preferences' output
folder" (see ``resolve_paths``), so a fresh scene works without typing any path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    IntVectorProperty,
    PointerProperty,
    StringProperty,
)

from . import config_props

DEVICES = [
    ("auto", "Auto", "CUDA when the interpreter sees a GPU, else CPU"),
    ("cpu", "CPU", "Train and predict on the CPU"),
    ("cuda", "CUDA", "Train and predict on an NVIDIA GPU"),
]


def _objects_source_changed(self: Any, context: Any) -> None:
    """Boxes for the categories of a newly chosen Asset Folder (asset_categories.sync)."""
    from . import asset_categories

    asset_categories.sync(self)


def _browse_index_changed(self: Any, context: Any) -> None:
    """Show the chosen image of the Browse Folder (Previous / Next set this index too)."""
    from .ops import preview

    preview.show_browsed(context)


# What a category may set, Default leaving the generator's own setting: the same choices and words for
# a category collection (CategorySettings) and an Asset Folder's category (AssetCategorySettings).
_DEFAULT_FREE_UPRIGHT = [("DEFAULT", "Default", "The generator's Placement setting", 0),
                         ("free", "Free", "A uniformly random 3D rotation", 1),
                         ("upright", "Upright", "A random turn about the vertical axis only", 2)]
_DEFAULT_ON_OFF = {
    "instseg_real_size": [("DEFAULT", "Default", "The generator's Real Size setting", 0),
                          ("ON", "Real Size", "Keep the template's own size in metres", 1),
                          ("OFF", "Scaled", "A size drawn from the generator's scale range", 2)],
    "instseg_physics": [("DEFAULT", "Default", "The generator's physics setting", 0),
                        ("ON", "Falls", "Dropped onto the ground by the rigid-body simulation", 1),
                        ("OFF", "Stands", "Stays where placed; falling objects land on it", 2)],
}


class AssetCategorySettings(bpy.types.PropertyGroup):
    """One Asset Folder category's settings (``Scene.instseg.asset_categories``, keyed by ``name``, the
    category): written as ``objects.per_category.<name>`` when not Default (asset_categories.py)."""

    own_count: BoolProperty(  # type: ignore[valid-type]
        name="Own Count", default=False,
        description="Draw this category's objects per scene from its own range (in addition to the "
        "generator's Min/Max Objects, drawn from the other categories)")
    count: IntVectorProperty(  # type: ignore[valid-type]
        name="Count", size=2, default=(1, 3), min=0, soft_max=50,
        description="Fewest and most objects of this category per scene")
    placement: EnumProperty(  # type: ignore[valid-type]
        name="Placement", items=_DEFAULT_FREE_UPRIGHT, default="DEFAULT")
    size: EnumProperty(  # type: ignore[valid-type]
        name="Size", items=_DEFAULT_ON_OFF["instseg_real_size"], default="DEFAULT")
    physics: EnumProperty(  # type: ignore[valid-type]
        name="Physics", items=_DEFAULT_ON_OFF["instseg_physics"], default="DEFAULT")


class InstSegSettings(bpy.types.PropertyGroup):
    """Everything the four panel sections need; one per scene."""

    # Dataset
    dataset_dir: StringProperty(  # type: ignore[valid-type]
        name="Output Folder", subtype="DIR_PATH", default="",
        description="Dataset folder to write; empty = 'dataset' under the add-on's output folder")
    num_images: IntProperty(name="Images", default=100, min=1, soft_max=100000,  # type: ignore[valid-type]
                            description="Number of images to render")
    seed: IntProperty(name="Seed", default=0, min=0,  # type: ignore[valid-type]
                      description="Global seed; the same seed gives the same dataset")
    resolution: IntProperty(name="Resolution", default=256, min=16, max=8192,  # type: ignore[valid-type]
                            description="Image width in pixels (and height, when Height is 0)")
    resolution_height: IntProperty(  # type: ignore[valid-type]
        name="Height", default=0, min=0, max=8192,
        description="Image height in pixels; 0 = square (the Resolution)")
    # every other generator setting, one group per config section (config_props.py)
    generator: PointerProperty(type=config_props.InstSegGeneratorSettings)  # type: ignore[valid-type]
    config_file: StringProperty(  # type: ignore[valid-type]
        name="Base Config", subtype="FILE_PATH", default="",
        description="Optional generator config (.toml/.json, or a dataset's config.json) for what only a "
        "config file sets: shapes, categories, per-category settings of the built-in shapes, light types, "
        "distractor shapes (an Asset Folder's and the collections' categories are set under Objects & Source). "
        "Load Config sets it; the panel's settings override the rest")
    min_objects: IntProperty(name="Min Objects", default=5, min=1, soft_max=100,  # type: ignore[valid-type]
                             description="Fewest objects per scene")
    max_objects: IntProperty(name="Max Objects", default=15, min=1, soft_max=200,  # type: ignore[valid-type]
                             description="Most objects per scene")
    samples: IntProperty(name="Samples", default=16, min=1, soft_max=1024,  # type: ignore[valid-type]
                         description="Cycles samples per pixel for the RGB images")
    masks_only: BoolProperty(name="Masks Only", default=False,  # type: ignore[valid-type]
                             description="Skip RGB (1 sample, no bounces): masks, depth and COCO only, fast")
    val_fraction: FloatProperty(  # type: ignore[valid-type]
        name="Validation Fraction", default=0.1, min=0.0, max=0.9, soft_max=0.5,
        description="Share of the images kept out of training: Evaluate scores them, training picks the "
        "model's score threshold on them, and Mine Hard Scenes mines them")
    # Dataset: where the objects come from (docs/generator.md, "Bring your own objects")
    object_source: EnumProperty(  # type: ignore[valid-type]
        name="Objects", default="BUILTIN", update=_objects_source_changed,
        items=[("BUILTIN", "Built-in Shapes", "Six primitives and three bundled shapes, random colours"),
               ("FOLDER", "Asset Folder", "Your asset files (.blend .obj .glb .gltf .fbx .ply .stl .usd): "
                "one category per subfolder, or per file at the top of the folder"),
               ("COLLECTIONS", "This File's Collections", "Each child collection of the InstSeg collection (or of "
                "the scene's top level) is a category; each object or collection in it an instance template. "
                "A copy of this file is read; the file itself is never changed")])
    blend_collection: StringProperty(  # type: ignore[valid-type]
        name="Parent Collection", default="",
        description="The collection whose children are the categories (empty: InstSeg, else the top level)")
    assets_dir: StringProperty(  # type: ignore[valid-type]
        name="Asset Folder", subtype="DIR_PATH", default="", update=_objects_source_changed,
        description="Folder of your asset files; each subfolder is a category")
    # per-category settings of Asset Folder categories, by category name (asset_categories.py); items
    # of categories no longer in the folder are kept (not written), so an earlier folder keeps its own
    asset_categories: CollectionProperty(type=AssetCategorySettings)  # type: ignore[valid-type]
    placement: EnumProperty(  # type: ignore[valid-type]
        name="Placement", default="free",
        items=[("free", "Free", "A random 3D rotation"),
               ("upright", "Upright", "A random turn about the vertical axis only: objects keep their up axis")])
    real_size: BoolProperty(name="Real Size", default=False,  # type: ignore[valid-type]
                            description="Keep every object's own size in metres instead of a random size")
    distractors_dir: StringProperty(  # type: ignore[valid-type]
        name="Distractors", subtype="DIR_PATH", default="",
        description="Optional folder of asset files rendered as clutter: they occlude, they are never labelled")
    max_distractors: IntProperty(name="Max Distractors", default=3, min=0, soft_max=50,  # type: ignore[valid-type]
                                 description="Distractors per scene: 0 up to this many")
    # Dataset: Preview Labels and the dataset browser (ops/preview.py)
    preview_index: IntProperty(  # type: ignore[valid-type]
        name="Preview Image", default=0, min=0, soft_max=100000,
        description="Which image of the dataset Generate would write Preview Labels renders (its own seed, "
        "from Seed and this index); Next Seed steps it")
    browse_dir: StringProperty(  # type: ignore[valid-type]
        name="Browse Folder", subtype="DIR_PATH", default="",
        description="Dataset folder to look through (generated or annotated); empty = the Output Folder")
    browse_index: IntProperty(  # type: ignore[valid-type]
        name="Image", default=0, min=0, update=_browse_index_changed,
        description="Which image of the Browse Folder is shown, with its masks (0 = the first)")
    # Annotate This Scene (ops/annotate.py)
    annotate_dir: StringProperty(  # type: ignore[valid-type]
        name="Output Folder", subtype="DIR_PATH", default="",
        description="Dataset folder of the annotated scene; empty = <output folder>/annotated/<file name>")
    annotate_frame_start: IntProperty(  # type: ignore[valid-type]
        name="Start", default=0, min=0, description="First frame; 0 = the scene's start")
    annotate_frame_end: IntProperty(  # type: ignore[valid-type]
        name="End", default=0, min=0, description="Last frame; 0 = the scene's end")
    annotate_masks_only: BoolProperty(  # type: ignore[valid-type]
        name="Masks Only", default=False,
        description="One fast 1-sample render per frame (the labels are the same)")
    annotate_samples: IntProperty(  # type: ignore[valid-type]
        name="Samples", default=0, min=0, soft_max=1024,
        description="Cycles samples for the images; 0 = the scene's own")
    annotate_uncategorized: EnumProperty(  # type: ignore[valid-type]
        name="Uncategorized", default="background",
        items=[("background", "Background", "Objects without a category render as background (id 0)"),
               ("ignore", "Left Out", "Objects without a category are left out of the render")])
    # Training
    run_dir: StringProperty(name="Run Folder", subtype="DIR_PATH", default="",  # type: ignore[valid-type]
                            description="Where checkpoints go; empty = 'run' under the add-on's output folder")
    train_minutes: FloatProperty(name="Minutes", default=5.0, min=0.1, soft_max=600.0,  # type: ignore[valid-type]
                                 description="Training time budget (used when Epochs is 0)")
    epochs: IntProperty(name="Epochs", default=0, min=0, soft_max=1000,  # type: ignore[valid-type]
                        description="Train for this many epochs; 0 = use the time budget")
    resume_training: BoolProperty(  # type: ignore[valid-type]
        name="Resume", default=True,
        description="Continue the run folder's last checkpoint (Minutes/Epochs count the whole run); "
                    "off = the run folder must be new")
    train_init: EnumProperty(  # type: ignore[valid-type]
        name="Start From", default="bundled",
        items=[("bundled", "Pretrained Weights", "The weights shipped with the add-on (they find objects of any "
                "kind); the category head learns your categories. Reaches a usable model in minutes"),
               ("none", "Random Weights", "Train from scratch (slower to reach the same accuracy)")],
        description="The weights a new run starts from (a resumed run keeps its own)")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")  # type: ignore[valid-type]
    # Hard-scene mining (one loop round per button press; docs/loop.md)
    mining_dir: StringProperty(  # type: ignore[valid-type]
        name="Mining Folder", subtype="DIR_PATH", default="",
        description="Folder of the mining loop (loop.json, round_N/); empty = 'mining' under the add-on's output folder")
    mining_budget: IntProperty(name="New Images", default=20, min=1, soft_max=10000,  # type: ignore[valid-type]
                               description="Training images rendered per round")
    mining_steps: IntProperty(name="Steps per Round", default=200, min=1, soft_max=100000,  # type: ignore[valid-type]
                              description="Fine-tuning steps per round, starting from the current checkpoint")
    mining_strategy: EnumProperty(  # type: ignore[valid-type]
        name="Strategy", default="hard",
        items=[("hard", "Hard Scenes", "Variants of the validation scenes the model gets most wrong"),
               ("random", "Random", "Fresh random scenes (the baseline to compare with)")])
    heldout_dir: StringProperty(  # type: ignore[valid-type]
        name="Held-out Set", subtype="DIR_PATH", default="",
        description="Optional dataset scored after every round (never mined); empty = no held-out score")
    # Evaluation / prediction
    checkpoint: StringProperty(name="Checkpoint", subtype="FILE_PATH", default="",  # type: ignore[valid-type]
                               description="Model checkpoint; empty = last.pt in the run folder")
    predictions_path: StringProperty(  # type: ignore[valid-type]
        name="Predictions", subtype="FILE_PATH", default="",
        description="Optional COCO results file: evaluate it instead of running the model")
    auto_threshold: BoolProperty(  # type: ignore[valid-type]
        name="Model's Threshold", default=True,
        description="When the model predicts, keep what scores above the threshold it measured best (F1) on its "
                    "validation set; off: use Score Threshold. A loaded predictions file always uses Score Threshold")
    score_threshold: FloatProperty(name="Score Threshold", default=0.3, min=0.0, max=1.0,  # type: ignore[valid-type]
                                   description="Hide predictions scoring below this")
    match_iou_threshold: FloatProperty(  # type: ignore[valid-type]
        name="Match IoU", default=0.5, min=0.0, max=1.0,
        description="A prediction selects a scene object only when their masks overlap at least this much")
    predict_samples: IntProperty(name="Render Samples", default=4, min=1, soft_max=256,  # type: ignore[valid-type]
                                 description="Cycles samples for the Predict View render")
    show_in_camera: BoolProperty(name="Show in Camera", default=True,  # type: ignore[valid-type]
                                 description="Also show the overlay as the camera's background image")
    predict_frames: BoolProperty(  # type: ignore[valid-type]
        name="Frames", default=False,
        description="Predict every frame of a range instead of the current one: an overlay sequence to scrub, "
                    "COCO results per frame and a per-object summary")
    predict_frame_start: IntProperty(  # type: ignore[valid-type]
        name="Start", default=0, min=0, description="First frame to predict; 0 = the scene's start frame")
    predict_frame_end: IntProperty(  # type: ignore[valid-type]
        name="End", default=0, min=0, description="Last frame to predict; 0 = the scene's end frame")


class InstSegWorstImage(bpy.types.PropertyGroup):
    image_id: IntProperty()  # type: ignore[valid-type]
    file_name: StringProperty()  # type: ignore[valid-type]
    error: FloatProperty()  # type: ignore[valid-type]
    n_missed: IntProperty()  # type: ignore[valid-type]
    n_false_pos: IntProperty()  # type: ignore[valid-type]


class InstSegPrediction(bpy.types.PropertyGroup):
    """One prediction of the last Predict View (matched or not)."""

    index: IntProperty()  # type: ignore[valid-type]
    category: StringProperty()  # type: ignore[valid-type]
    score: FloatProperty()  # type: ignore[valid-type]
    object_name: StringProperty()  # type: ignore[valid-type]
    iou: FloatProperty()  # type: ignore[valid-type]
    frame: IntProperty()  # type: ignore[valid-type]  # Predict View over frames: the frame it was in


# Per-category settings of "From this file's collections" live on the category collection as plain
# custom properties (blend_source reads them, with or without the add-on, in the generator's copy of
# the file). ``CategorySettings`` shows them as widgets: every property reads and writes the custom
# property through get/set, and "Default" removes it so the generator's own setting applies.
_ROLES = [("target", "Target", "Annotated: its objects are the instances to segment", 0),
          ("distractor", "Distractor", "Rendered and occluding, never annotated", 1),
          ("ignore", "Ignore", "Left out of the dataset", 2)]


def _owner(group: bpy.types.PropertyGroup) -> Any:
    """The collection a ``CategorySettings`` belongs to (its custom properties hold the values)."""
    return group.id_data


def _stored(key: str, items: list[tuple[str, str, str, int]], default: str):  # type: ignore[no-untyped-def]
    """The enum's get/set pair over custom property ``key``: the item identifiers are the stored
    strings, except ON/OFF (stored as true/false) and DEFAULT (the property is absent)."""

    def get(self: bpy.types.PropertyGroup) -> int:
        value = _owner(self).get(key, default)
        if isinstance(value, (bool, int)) and not isinstance(value, str):
            value = "ON" if value else "OFF"
        return next((i for ident, _, _, i in items if ident == value), 0)

    def set_(self: bpy.types.PropertyGroup, index: int) -> None:
        ident = next(ident for ident, _, _, i in items if i == index)
        if ident == "DEFAULT":
            _owner(self).pop(key, None)
        else:
            _owner(self)[key] = (ident == "ON") if ident in ("ON", "OFF") else ident

    return get, set_


def _get_count(self: bpy.types.PropertyGroup) -> tuple[int, int]:
    value = _owner(self).get("instseg_count")
    if value is None:
        return (0, 0)
    count = list(value.to_list() if hasattr(value, "to_list") else [value, value])
    return (int(count[0]), int(count[-1])) if count else (0, 0)


def _set_count(self: bpy.types.PropertyGroup, value: tuple[int, int]) -> None:
    low, high = int(value[0]), int(value[1])
    _owner(self)["instseg_count"] = [min(low, high), max(low, high)]


def _get_own_count(self: bpy.types.PropertyGroup) -> bool:
    return "instseg_count" in _owner(self)


def _set_own_count(self: bpy.types.PropertyGroup, on: bool) -> None:
    if on and "instseg_count" not in _owner(self):
        _owner(self)["instseg_count"] = [1, 3]
    elif not on:
        _owner(self).pop("instseg_count", None)


_ROLE = _stored("instseg_role", _ROLES, "target")
_PLACEMENT = _stored("instseg_placement", _DEFAULT_FREE_UPRIGHT, "DEFAULT")
_SIZE = _stored("instseg_real_size", _DEFAULT_ON_OFF["instseg_real_size"], "DEFAULT")
_PHYSICS = _stored("instseg_physics", _DEFAULT_ON_OFF["instseg_physics"], "DEFAULT")


class CategorySettings(bpy.types.PropertyGroup):
    """A category collection's settings for the generator (``Collection.instseg``), stored as the
    collection's ``instseg_*`` custom properties (see blend_source)."""

    role: EnumProperty(name="Role", items=_ROLES, get=_ROLE[0], set=_ROLE[1])  # type: ignore[valid-type]
    own_count: BoolProperty(  # type: ignore[valid-type]
        name="Own Count", get=_get_own_count, set=_set_own_count,
        description="Draw this category's objects per scene from its own range (in addition to the "
        "generator's Min/Max Objects, drawn from the other categories)")
    count: IntVectorProperty(  # type: ignore[valid-type]
        name="Count", size=2, min=0, soft_max=50, get=_get_count, set=_set_count,
        description="Fewest and most objects of this category per scene")
    placement: EnumProperty(  # type: ignore[valid-type]
        name="Placement", items=_DEFAULT_FREE_UPRIGHT, get=_PLACEMENT[0], set=_PLACEMENT[1])
    size: EnumProperty(  # type: ignore[valid-type]
        name="Size", items=_DEFAULT_ON_OFF["instseg_real_size"], get=_SIZE[0], set=_SIZE[1])
    physics: EnumProperty(  # type: ignore[valid-type]
        name="Physics", items=_DEFAULT_ON_OFF["instseg_physics"], get=_PHYSICS[0], set=_PHYSICS[1])


class InstSegObjectRef(bpy.types.PropertyGroup):
    object_name: StringProperty()  # type: ignore[valid-type]


class InstSegJobState(bpy.types.PropertyGroup):
    """Runtime state of the current/last child process and the results shown in the panel."""

    running: BoolProperty(default=False)  # type: ignore[valid-type]
    kind: StringProperty(default="")  # type: ignore[valid-type]
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")  # type: ignore[valid-type]
    status: StringProperty(default="")  # type: ignore[valid-type]
    loss: FloatProperty(default=0.0)  # type: ignore[valid-type]
    has_loss: BoolProperty(default=False)  # type: ignore[valid-type]
    eta_s: FloatProperty(default=-1.0)  # type: ignore[valid-type]
    last_error: StringProperty(default="")  # type: ignore[valid-type]
    summary: StringProperty(default="")  # type: ignore[valid-type]
    # evaluation results
    has_metrics: BoolProperty(default=False)  # type: ignore[valid-type]
    mask_ap: FloatProperty(default=0.0)  # type: ignore[valid-type]
    mask_ap50: FloatProperty(default=0.0)  # type: ignore[valid-type]
    boundary_ap: FloatProperty(default=0.0)  # type: ignore[valid-type]
    report_dir: StringProperty(default="", subtype="DIR_PATH")  # type: ignore[valid-type]
    eval_source: StringProperty(default="")  # type: ignore[valid-type]  # which images the numbers are on
    eval_on_training_images: BoolProperty(default=False)  # type: ignore[valid-type]
    worst_images: CollectionProperty(type=InstSegWorstImage)  # type: ignore[valid-type]
    # prediction results
    overlay_image: StringProperty(default="")  # type: ignore[valid-type]
    overlay_path: StringProperty(default="", subtype="FILE_PATH")  # type: ignore[valid-type]
    matched: CollectionProperty(type=InstSegPrediction)  # type: ignore[valid-type]
    unmatched: CollectionProperty(type=InstSegPrediction)  # type: ignore[valid-type]
    missed: CollectionProperty(type=InstSegObjectRef)  # type: ignore[valid-type]
    saved_selection: CollectionProperty(type=InstSegObjectRef)  # type: ignore[valid-type]
    saved_active: StringProperty(default="")  # type: ignore[valid-type]
    has_saved_selection: BoolProperty(default=False)  # type: ignore[valid-type]
    # Predict View over frames: every frame's matches (the panel lists the current frame's) and the
    # per-object summary's top lines (newline-separated)
    frame_matched: CollectionProperty(type=InstSegPrediction)  # type: ignore[valid-type]
    frames_summary: StringProperty(default="")  # type: ignore[valid-type]
    frames_dir: StringProperty(default="", subtype="DIR_PATH")  # type: ignore[valid-type]
    # Preview Labels: the last preview's image and its label counts (ops/preview.py)
    has_preview: BoolProperty(default=False)  # type: ignore[valid-type]
    preview_index: IntProperty(default=0)  # type: ignore[valid-type]
    preview_seed: StringProperty(default="")  # type: ignore[valid-type]  # image seeds go past a C int
    preview_size: StringProperty(default="")  # type: ignore[valid-type]  # "256x256" (+ the dataset's size)
    preview_annotated: IntProperty(default=0)  # type: ignore[valid-type]
    preview_small: IntProperty(default=0)  # type: ignore[valid-type]
    preview_outside_frame: IntProperty(default=0)  # type: ignore[valid-type]
    preview_occluded: IntProperty(default=0)  # type: ignore[valid-type]
    preview_too_little_visible: IntProperty(default=0)  # type: ignore[valid-type]
    preview_categories: StringProperty(default="")  # type: ignore[valid-type]
    # the dataset browser: the image shown, or why none is
    browse_folder: StringProperty(default="", subtype="DIR_PATH")  # type: ignore[valid-type]
    browse_total: IntProperty(default=0)  # type: ignore[valid-type]
    browse_position: IntProperty(default=0)  # type: ignore[valid-type]
    browse_file: StringProperty(default="")  # type: ignore[valid-type]
    browse_split: StringProperty(default="")  # type: ignore[valid-type]
    browse_annotated: IntProperty(default=0)  # type: ignore[valid-type]
    browse_hidden: IntProperty(default=0)  # type: ignore[valid-type]
    browse_categories: StringProperty(default="")  # type: ignore[valid-type]
    browse_error: StringProperty(default="")  # type: ignore[valid-type]


classes = (*config_props.classes, AssetCategorySettings, InstSegSettings, CategorySettings, InstSegWorstImage,
           InstSegPrediction, InstSegObjectRef, InstSegJobState)


def register() -> None:
    bpy.types.Scene.instseg = PointerProperty(type=InstSegSettings)
    bpy.types.Collection.instseg = PointerProperty(type=CategorySettings)
    bpy.types.WindowManager.instseg_job = PointerProperty(type=InstSegJobState)


def reset_job_state(state: Any) -> None:
    """Every job-state property back to its default: a re-enabled add-on starts idle, with no stale
    "running" job or results of the add-on's previous life (the WindowManager keeps them otherwise)."""
    for name in state.bl_rna.properties.keys():
        if name in ("rna_type", "name"):
            continue
        value = getattr(state, name)
        if hasattr(value, "clear"):
            value.clear()
        else:
            state.property_unset(name)


def unregister() -> None:
    for wm in bpy.data.window_managers:
        if hasattr(wm, "instseg_job"):
            reset_job_state(wm.instseg_job)
    for owner, name in ((bpy.types.WindowManager, "instseg_job"), (bpy.types.Scene, "instseg"),
                        (bpy.types.Collection, "instseg")):
        if hasattr(owner, name):
            delattr(owner, name)


def settings(context: bpy.types.Context) -> InstSegSettings:
    return context.scene.instseg


def job_state(context: bpy.types.Context) -> InstSegJobState:
    return context.window_manager.instseg_job


@dataclass
class Paths:
    """Absolute folders/files the operators use, with the empty-means-default rule applied."""

    root: Path
    dataset: Path
    run: Path
    checkpoint: Path
    report: Path
    predict: Path
    mining: Path


def output_root(context: bpy.types.Context) -> Path:
    """The preferences' output folder (Blender's per-extension user folder by default)."""
    from .preferences import resolve_output_dir

    return Path(resolve_output_dir(context))


def _abs(value: str) -> Path | None:
    return Path(os.path.normpath(bpy.path.abspath(value))) if value else None


def resolve_paths(context: bpy.types.Context) -> Paths:
    s = settings(context)
    root = output_root(context)
    dataset = _abs(s.dataset_dir) or root / "dataset"
    run = _abs(s.run_dir) or root / "run"
    checkpoint = _abs(s.checkpoint) or run / "last.pt"
    return Paths(root=root, dataset=dataset, run=run, checkpoint=checkpoint,
                 report=run / "eval", predict=root / "predict", mining=_abs(s.mining_dir) or root / "mining")
