"""Generate dataset: run the generator in a child process so the UI keeps drawing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import bpy

from ...core.fileio import atomic_write_json
from ...core.formats import dataset
from ...core.genconfig import FILE_PREFIX, GeneratorConfig, load_config
from ...generator.sources import use_asset_folder, use_distractor_folder
from ...procs.argv import child_env
from ...procs.child import ChildResult
from .. import OperatorReturn, asset_categories, config_props
from ..children import panel_generator_argv
from ..props import resolve_paths, settings
from .. import wording
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


def config_path() -> Path:
    """Where Generate writes the panel's generator config (--config), beside the scene copy."""
    return Path(tempfile.gettempdir()) / f"instseg-config-{os.getpid()}.json"


def base_config(s: Any) -> GeneratorConfig | None:
    """The Base Config file's config, or None without one; ``ValueError`` in one line for a bad file."""
    if not s.config_file.strip():
        return None
    return load_config(bpy.path.abspath(s.config_file.strip()))


def _config_only(cfg: GeneratorConfig | None) -> dict[str, Any]:
    """The keys of ``cfg`` that only a config file sets (lists and tables), in the stored form."""
    if cfg is None:
        return {}
    stored = cfg.to_dict()
    data: dict[str, Any] = {k: v for k, v in stored.items() if not isinstance(v, dict)}
    for section in config_props.SECTIONS:
        only = {k: stored[section][k] for k in config_props.config_only(section)}
        if only:
            data[section] = only
    return data


def _asset_folder_config(s: Any, data: dict[str, Any]) -> None:
    """The Asset Folder's per-category settings into ``data`` (a config in stored form): the boxes
    decide ``objects.per_category`` of the folder's categories. A config naming categories must also
    name them (a config is checked on its own when loaded), so with any box set ``data`` gets the
    folder's label map and folder too: what ``--assets`` makes of the folder, written out."""
    objects = data.get("objects", {})
    per_category = asset_categories.merged(s, objects.get("per_category", {}))
    if "per_category" in objects or per_category:
        data.setdefault("objects", {})["per_category"] = per_category
    if not asset_categories.chosen(s):
        return
    objects = data["objects"]
    if not any(str(shape).startswith(FILE_PREFIX) for shape in objects.get("shapes", {})):
        shapes = asset_categories.scan(s.assets_dir)
        objects["shapes"] = dict(shapes)
        data["categories"] = sorted(set(shapes.values()))
    objects["assets_dir"] = str(asset_categories.folder_path(s.assets_dir).resolve())


def config_overrides(context: Any) -> dict[str, Any]:
    """What Generate's --config file holds: the Base Config's config-file-only keys, every panel
    setting of the config sections that differs from the generator's default and the Asset Folder's
    per-category settings (the Dataset section's own settings travel as flags)."""
    s = settings(context)
    data = _config_only(base_config(s))
    for section, values in config_props.overrides(s.generator).items():
        data.setdefault(section, {}).update(values)
    if s.object_source == "FOLDER" and s.assets_dir.strip():
        _asset_folder_config(s, data)
    return data


def panel_config(context: Any, *, sources: bool = False) -> GeneratorConfig:
    """The config the panel describes, validated (``ValueError`` in one line): the Base Config's
    config-file-only keys, every config-section setting and the Dataset section's own settings.
    With ``sources``, an Asset Folder and a Distractors folder are read as the generator reads them
    (their files become shapes); This File's Collections is the generator's --blend and has no
    config form."""
    s = settings(context)
    data = _config_only(base_config(s))
    for section, values in config_props.panel_values(s.generator).items():
        data.setdefault(section, {}).update(values)
    cfg = GeneratorConfig.from_dict(data)
    cfg.objects.min_count, cfg.objects.max_count = s.min_objects, s.max_objects
    cfg.objects.placement, cfg.objects.real_size = s.placement, s.real_size
    cfg.render.resolution = [s.resolution, s.resolution_height or s.resolution]
    cfg.render.samples, cfg.render.masks_only = s.samples, s.masks_only
    cfg.output.val_fraction = float(f"{s.val_fraction:.6g}")
    if s.object_source == "FOLDER" and s.assets_dir.strip():
        folder = Path(bpy.path.abspath(s.assets_dir.strip()))
        if sources or asset_categories.chosen(s):  # per-category settings are checked against its categories
            use_asset_folder(cfg, folder)
            cfg.objects.per_category = asset_categories.merged(s, cfg.objects.per_category)
        else:
            cfg.objects.assets_dir = str(folder)  # what --assets sets before the folder is read
    elif s.object_source == "COLLECTIONS" and not sources:
        cfg.objects.blend_file = str(scene_copy_path())  # --blend: read in the generator's own Blender
    if sources:
        if s.distractors_dir.strip():
            use_distractor_folder(cfg, Path(bpy.path.abspath(s.distractors_dir.strip())))
            cfg.distractors.max_count = s.max_distractors
    return cfg.validate()


def apply_config(context: Any, cfg: GeneratorConfig) -> None:
    """Load Config: every panel setting from ``cfg`` (the config sections and the Dataset section's own)."""
    s = settings(context)
    config_props.apply(s.generator, cfg)
    s.min_objects, s.max_objects = max(1, cfg.objects.min_count), max(1, cfg.objects.max_count)
    s.placement, s.real_size = cfg.objects.placement, cfg.objects.real_size
    width, height = cfg.render.resolution
    s.resolution, s.resolution_height = width, (0 if height == width else height)
    s.samples, s.masks_only = cfg.render.samples, cfg.render.masks_only
    s.val_fraction = cfg.output.val_fraction
    if cfg.distractors.max_count:
        s.max_distractors = cfg.distractors.max_count
    if cfg.objects.assets_dir.strip():
        s.object_source, s.assets_dir = "FOLDER", cfg.objects.assets_dir
        asset_categories.fill(s, cfg.objects.per_category)
    elif cfg.blend_shapes():  # a dataset made from a file's collections: Generate reads this file's
        s.object_source = "COLLECTIONS"
    if cfg.distractors.assets_dir.strip():
        s.distractors_dir = cfg.distractors.assets_dir


def generate_args(context: Any) -> list[str]:
    """The generator's CLI arguments for the scene's settings (see docs/generator.md); the config
    sections' settings go in ``config_path()`` (written by Generate), named by ``--config``."""
    s = settings(context)
    if s.min_objects > s.max_objects:
        raise ValueError(f"Min Objects ({s.min_objects}) is larger than Max Objects ({s.max_objects})")
    try:
        panel_config(context)
    except ValueError as exc:
        raise ValueError(wording.ui_message("generate", str(exc))) from None
    out = resolve_paths(context).dataset
    resolution = str(s.resolution) if not s.resolution_height else f"{s.resolution}x{s.resolution_height}"
    args = ["--out", str(out), "--num-images", str(s.num_images), "--seed", str(s.seed),
            "--resolution", resolution, "--min-objects", str(s.min_objects),
            "--max-objects", str(s.max_objects), "--samples", str(s.samples), "--progress", "jsonl"]
    if config_overrides(context):
        args += ["--config", str(config_path())]
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


def write_generate_config(context: Any) -> Path | None:
    """Write the panel's --config file (``config_overrides``) for Generate; None when it is empty."""
    data = config_overrides(context)
    if not data:
        return None
    return atomic_write_json(config_path(), data, indent=2)


def done_summary(out: Path, done: dict[str, Any]) -> str:
    """The line Generate shows at the end: the dataset's total (its records), and how many of them
    this run rendered when that is fewer (a resumed or extended dataset)."""
    total = len(dataset.completed_indices(out))
    rendered = done.get("images")
    if done.get("stopped"):
        return f"dataset: stopped with {total} images in {out}; generate again to resume"
    if isinstance(rendered, int) and rendered != total:
        return f"dataset: {total} images in {out} ({rendered} rendered now)"
    return f"dataset: {total} images in {out}"


class INSTSEG_OT_generate_dataset(JobOperatorMixin, bpy.types.Operator):
    """Render a synthetic COCO dataset with the settings above (in a background process)"""

    bl_idname = "instseg.generate_dataset"
    bl_label = "Generate Dataset"

    def build_spec(self, context: Any) -> jobs.JobSpec:
        args = generate_args(context)
        if settings(context).object_source == "COLLECTIONS":
            save_scene_copy()
        write_generate_config(context)
        out = resolve_paths(context).dataset
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = panel_generator_argv(args)

        def on_done(ctx: Any, result: ChildResult) -> str:
            return done_summary(out, result.done.data if result.done is not None else {})

        return jobs.JobSpec("generate", argv, on_done, env=child_env(), cwd=str(out.parent),
                            label=f"generating {settings(context).num_images} images")


class INSTSEG_OT_add_asset_categories(bpy.types.Operator):
    """Give the Asset Folder's new categories their own settings boxes (all Default until changed)"""

    bl_idname = "instseg.add_asset_categories"
    bl_label = "Add Category Settings"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: Any) -> set[OperatorReturn]:
        asset_categories.sync(settings(context))
        return {"FINISHED"}


classes = (INSTSEG_OT_generate_dataset, INSTSEG_OT_add_asset_categories)
