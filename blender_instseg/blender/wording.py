"""Error messages in the panel's words: the children speak in flags and config keys, the panel in its labels.

The generator, trainer and the other children are command-line programs, and their one-line errors
name what a command-line user typed ("use a new --out", "render.samples must be >= 1"). Shown in
the panel, those names point at nothing the artist can see, so ``ui_message`` swaps each flag and
config key for the setting that the panel passes as it. A flag means a different setting per job
(``--out`` is the dataset folder for Generate and the run folder for Train), hence one table per job kind.
"""

from __future__ import annotations

import re

from . import config_props

_DATASET = {"--out": "Output Folder", "--num-images": "Images", "--seed": "Seed", "--resolution": "Resolution",
            "--samples": "Samples", "--masks-only": "Masks Only", "--min-objects": "Objects Min",
            "--max-objects": "Max", "--val-fraction": "Validation Fraction", "--assets": "Asset Folder",
            "--blend": "This File's Collections", "--blend-collection": "Parent Collection",
            "--distractors": "Distractors", "--max-distractors": "Max Distractors", "--placement": "Placement",
            "--real-size": "Real Size", "--config": "Base Config", "--hdri": "HDRI Folder",
            "--backgrounds": "Photo Folder", "--textures": "Texture Folder"}

# job kind -> flag -> the panel setting it comes from
FLAG_LABELS: dict[str, dict[str, str]] = {
    "generate": _DATASET,
    "preview": _DATASET,  # Preview Labels passes Generate's own arguments
    "annotate": {"--out": "Output Folder (Annotate This Scene)", "--frames": "Start/End", "--samples": "Samples",
                 "--masks-only": "Masks Only", "--blend-collection": "Parent Collection",
                 "--uncategorized": "Uncategorized", "--blend": "the saved file"},
    "train": {"--out": "Run Folder", "--data": "Output Folder (Dataset)", "--minutes": "Minutes",
              "--epochs": "Epochs", "--device": "Device", "--resume": "Resume", "--init": "Start From"},
    "mine": {"--run": "Mining Folder", "--data": "Output Folder (Dataset)", "--init": "Checkpoint",
             "--budget": "New Images", "--steps-per-round": "Steps per Round", "--strategy": "Strategy",
             "--heldout": "Held-out Set"},
    "evaluate": {"--checkpoint": "Checkpoint", "--pred": "Predictions", "--data": "Output Folder (Dataset)",
                 "--out": "Run Folder", "--score-threshold": "Score Threshold"},
    "predict": {"--checkpoint": "Checkpoint", "--score-threshold": "Score Threshold", "--match-iou": "Match IoU",
                "--device": "Device"},
}

# config keys the Dataset section's own settings hold, by their label there
_OWNED_LABELS = {"objects.min_count": "Objects Min", "objects.max_count": "Max", "objects.placement": "Placement",
                 "objects.real_size": "Real Size", "objects.assets_dir": "Asset Folder",
                 "objects.blend_file": "This File's Collections", "distractors.assets_dir": "Distractors",
                 "distractors.max_count": "Max Distractors", "render.resolution": "Resolution",
                 "render.samples": "Samples", "render.masks_only": "Masks Only",
                 "output.val_fraction": "Validation Fraction"}

# a category's own setting (objects.per_category.<category>.<key>): its box under Objects & Source
_PER_CATEGORY = re.compile(
    r"\b(?:generator\.|config\.)?objects\.per_category\.(\S+?)\.(count|placement|real_size|physics)\b")
_PER_CATEGORY_LABELS = {"count": "Count", "placement": "Placement", "real_size": "Size", "physics": "Physics"}

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_KEY = re.compile(r"\b(?:generator\.|config\.)?([a-z]+)\.([a-z_]+)\b")


def config_label(section: str, name: str) -> str | None:
    """'Group > Label' of a config key as the Dataset section shows it, or None for an unknown key."""
    key = f"{section}.{name}"
    if key in _OWNED_LABELS:
        return _OWNED_LABELS[key]
    if section not in config_props.SECTIONS:
        return None
    if name not in config_props.fields(section):
        return None
    group = next(title for _, title, sections in config_props.GROUPS if section in sections)
    return f"{group} > {config_props.label(key)}"


def ui_message(kind: str, text: str) -> str:
    """``text`` with the flags of job ``kind`` and the generator's config keys named as the panel names them."""
    flags = FLAG_LABELS.get(kind, {})

    def flag(match: re.Match[str]) -> str:
        return flags.get(match.group(0), match.group(0))

    def key(match: re.Match[str]) -> str:
        return config_label(match.group(1), match.group(2)) or match.group(0)

    def per_category(match: re.Match[str]) -> str:
        return f"Objects & Source > {match.group(1)} > {_PER_CATEGORY_LABELS[match.group(2)]}"

    return _KEY.sub(key, _PER_CATEGORY.sub(per_category, _FLAG.sub(flag, text)))
