"""Resume identity: a dataset folder is continued only by a command that would render the same pixels and labels.

config.json is written before the first image; a rerun compares its identity (everything that
changes pixels or labels) with the new command's and refuses a mismatch in one line, naming the
first differing setting. Output-only settings (mask format, exports, preview) and the device may change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.formats import dataset
from ..core.fileio import atomic_create_bytes, atomic_write_bytes
from ..core.formats import FORMATS
from ..core.genconfig import export_switch
from .cli import UsageError


# Settings added after datasets were already written, with the value that renders what those
# datasets rendered: a stored config without them is read as having these. (The visibility filters
# did not exist, which is min_visible_pixels 1 and min_visible_fraction 0: a resume with today's
# defaults is then refused, naming the filter, since the labels would differ.)
_BEFORE_THEY_EXISTED: dict[str, dict[str, Any]] = {
    "objects": {"assets_dir": "", "blend_file": "", "placement": "free", "real_size": False, "per_category": {},
                "keep_asset_materials": True, "min_visible_pixels": 1, "min_visible_fraction": 0.0,
                "max_triangles": 0},
    "distractors": {"shapes": [], "assets_dir": "", "min_count": 0, "max_count": 0, "scale": [0.35, 0.8],
                    "placement": "free", "keep_asset_materials": True},
    # the looks (no folder: no HDRI, photo or texture, the worlds and materials of before)
    "world": {"hdri_dir": "", "hdri_probability": 1.0, "hdri_strength": [0.6, 1.5], "hdri_rotation": [0.0, 360.0]},
    "backplate": {"photos_dir": "", "probability": 1.0, "horizon_margin": 5.0},
    "textures": {"textures_dir": "", "ground_probability": 1.0, "distractor_probability": 1.0,
                 "object_probability": 0.3, "tile_size": [0.5, 2.0], "ground_tile_size": [1.0, 4.0],
                 "asset_hue_jitter": 0.0, "asset_value_jitter": 0.0, "asset_roughness_jitter": 0.0},
    # camera, sensor and transparency effects: all off, the RGB every earlier dataset has
    "materials": {"glass_probability": 0.0, "alpha_cut_probability": 0.0, "transparency_labels": "footprint"},
    "lens": {"dof_probability": 0.0, "fstop": [0.05, 0.5], "motion_blur_probability": 0.0, "shutter": [0.3, 1.0],
             "object_motion": [0.0, 0.3], "camera_motion": [0.0, 0.1]},
    "sensor": {"noise_probability": 0.0, "noise": [0.005, 0.03], "exposure_probability": 0.0, "exposure": [-1.0, 1.0],
               "white_balance_probability": 0.0, "white_balance": [-0.3, 0.3], "jpeg_probability": 0.0,
               "jpeg_quality": [60, 95]},
    # every image drew its looks from their own chances
    "looks": {"plain_probability": 0.0},
    # still images (one frame per scene); a still dataset's config.json leaves the section out
    "sequence": {"frames": 1, "fps": 24.0, "physics": "settled", "object_speed": [0.0, 0.5],
                 "object_spin": [0.0, 90.0], "camera_orbit": [0.0, 15.0], "camera_dolly": [-0.3, 0.3]},
}


def _identity(conf: dict[str, Any]) -> dict[str, Any]:
    """The parts of a dataset config that must match for a resume: everything that changes pixels or labels."""
    gen = json.loads(json.dumps(conf.get("generator", {})))
    if gen:
        for section, keys in _BEFORE_THEY_EXISTED.items():
            filled = gen.setdefault(section, {})
            for key, value in keys.items():
                filled.setdefault(key, json.loads(json.dumps(value)))
    out = gen.get("output", {})
    for key in ("mask_format", *(export_switch(name) for name in FORMATS), "preview"):
        out.pop(key, None)
    gen.get("render", {}).pop("device", None)
    return {"generator": gen, "seed": conf.get("seed"), "variants_of": conf.get("variants_of")}


def write_or_check_config(out: Path, conf: dict[str, Any], *, write: bool = True) -> None:
    """Write ``out``/config.json, or check that an existing one has ``conf``'s identity (``UsageError`` if not).

    The first write is an exclusive create: of two commands starting on an empty folder at once, one
    writes config.json and the other is checked against it. A matching config is rewritten only
    when ``num_images`` grew or shrank (a resume may change it).
    """
    path = out / dataset.CONFIG_FILE
    if write and not path.exists() and atomic_create_bytes(path, _config_bytes(conf)):
        return
    if path.exists():
        try:
            old = dataset.read_dataset_config(out)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"{out} holds an unreadable dataset config ({exc}); use a new --out") from None
        a, b = _identity(old), _identity(conf)
        if a != b:
            diff = _first_diff(a, b)
            raise UsageError(f"{out} holds a dataset made with other settings ({diff}); use a new --out or the same settings")
        if not write or old.get("num_images") == conf["num_images"]:
            return
    if write:
        atomic_write_bytes(path, _config_bytes(conf))


def _config_bytes(conf: dict[str, Any]) -> bytes:
    return json.dumps(conf, indent=2).encode("utf-8")


def _first_diff(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} vs {b!r}"
