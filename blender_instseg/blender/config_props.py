"""The generator's whole config as panel settings, built from ``core.genconfig``'s dataclasses.

One PropertyGroup per config section (``Scene.instseg.generator.<section>``), made from the section's
stored form (``GeneratorConfig().to_dict()``): a bool becomes a BoolProperty, an int an IntProperty,
a float a FloatProperty, a ``[low, high]`` pair a 2-vector, a string ending in ``_dir`` a folder path,
and a string of ``ENUMS`` a drop-down. Lists and tables that fit no widget (the label map, category
lists, per-category overrides, light types) stay config-file only; ``config_only`` names them so the
panel can say so. A new config field therefore gets its widget by itself; its line in ``FIELDS``
gives it a readable label and help text.

The fields the Dataset section has always had as its own settings (``PANEL_OWNED``: counts, resolution,
samples, ...) are not duplicated here: they stay on ``Scene.instseg`` (so files saved before keep
their values) and reach the generator as the flags they always were.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    IntVectorProperty,
    PointerProperty,
    StringProperty,
)

from ..core.formats.dataset import MASK_FORMATS
from ..core.genconfig import PLACEMENTS, SEQUENCE_PHYSICS, TRANSPARENCY_LABELS, GeneratorConfig

# config key -> the Scene.instseg setting that holds it (passed as a generator flag, see ops/dataset.py)
PANEL_OWNED: dict[str, str] = {
    "objects.min_count": "min_objects",
    "objects.max_count": "max_objects",
    "objects.assets_dir": "assets_dir",
    "objects.blend_file": "object_source",
    "objects.placement": "placement",
    "objects.real_size": "real_size",
    "distractors.assets_dir": "distractors_dir",
    "distractors.max_count": "max_distractors",
    "render.resolution": "resolution",
    "render.samples": "samples",
    "render.masks_only": "masks_only",
    "output.val_fraction": "val_fraction",
}

# enumerated strings: config key -> (identifier, label, help) per choice. The identifiers are the
# values genconfig accepts (its validate() refuses any other).
ENUMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "distractors.placement": tuple((p, p.title(), {"free": "A random 3D rotation",
                                                   "upright": "A random turn about the vertical axis only"}[p])
                                   for p in PLACEMENTS),
    "materials.transparency_labels": tuple(
        (t, t.title(), {"footprint": "Every pixel of the object's geometry, holes included",
                        "opaque": "Only where the material's alpha is >= 0.5"}[t]) for t in TRANSPARENCY_LABELS),
    "render.device": (("auto", "Auto", "The GPU when Cycles finds one, else the CPU"),
                      ("cpu", "CPU", "Render on the CPU"), ("gpu", "GPU", "Render on the GPU")),
    "sequence.physics": tuple((p, p.title(), {"settled": "Frame 0 is the settled scene; then it moves",
                                               "falling": "The frames show the physics drop (needs Physics)"}[p])
                              for p in SEQUENCE_PHYSICS),
    "output.mask_format": tuple((m, m.upper() if m == "rle" else m.title(), {
        "rle": "Compressed RLE masks in the merged COCO (exact)",
        "polygon": "Polygons in the merged COCO (holes bridged)"}[m]) for m in MASK_FORMATS),
}

# config key -> (label, help). One line per field; a field without one gets its key as the label.
FIELDS: dict[str, tuple[str, str]] = {
    "objects.keep_asset_materials": ("Keep Asset Materials", "Imported assets keep their own materials; off: the random palette"),
    "objects.max_triangles": ("Max Triangles", "Simplify each imported mesh (objects and distractors) with more "
                              "triangles to this many, once at import; 0 keeps them all. Dense meshes render "
                              "slowly on a CPU; the masks stay exact"),
    "objects.scale": ("Scale", "Size of an object's largest half-extent in metres (low, high), unless Real Size"),
    "objects.scatter_radius": ("Scatter Radius", "Objects are placed in a disc of this radius (metres)"),
    "objects.linked_duplicates": ("Linked Duplicates", "Chance that an object reuses the previous object's mesh and material"),
    "objects.allow_hidden": ("Allow Hidden", "Keep fully hidden objects where they are instead of moving them into view"),
    "objects.max_resample": ("Max Resample", "Tries to move a hidden object into view before it is recorded as hidden"),
    "objects.min_visible_pixels": ("Min Visible Pixels", "Fewer visible pixels: not annotated (recorded as hidden)"),
    "objects.min_visible_fraction": ("Min Visible Fraction", "A smaller visible share of its area: not annotated"),
    "objects.float_height": ("Float Height", "Extra height above the ground in metres (low, high; without physics)"),
    "distractors.min_count": ("Min Distractors", "Fewest distractors per scene (with a Distractors folder)"),
    "distractors.scale": ("Distractor Scale", "Largest half-extent of a distractor in metres (low, high)"),
    "distractors.placement": ("Distractor Placement", "How distractors are turned"),
    "distractors.keep_asset_materials": ("Distractor Materials", "Distractor assets keep their own materials"),
    "materials.roughness": ("Roughness", "Principled roughness (low, high)"),
    "materials.metallic_probability": ("Metallic", "Chance that an object is metallic"),
    "materials.texture_probability": ("Procedural Texture", "Chance of a noise/voronoi texture mixing two colours"),
    "materials.saturation": ("Saturation", "Colour saturation (low, high)"),
    "materials.value": ("Value", "Colour brightness (low, high)"),
    "materials.glass_probability": ("Glass", "Chance of a clear glass material"),
    "materials.alpha_cut_probability": ("Alpha Cut", "Chance of a material with holes cut by its alpha"),
    "materials.transparency_labels": ("Transparency Labels", "What the labels of alpha-cut objects cover"),
    "lights.min_count": ("Min Lights", "Fewest lights per scene"),
    "lights.max_count": ("Max Lights", "Most lights per scene"),
    "lights.sun_strength": ("Sun Strength", "Strength of sun lights (low, high)"),
    "lights.energy": ("Energy", "Watts of point, area and spot lights (low, high)"),
    "lights.saturation": ("Tint", "Saturation of the lights' colour (low, high)"),
    "camera.distance": ("Distance", "Metres from the objects' centre (low, high)"),
    "camera.elevation": ("Elevation", "Degrees above the ground (low, high); photo backplates need a camera "
                         "looking down, so this decides how many images get a photo"),
    "camera.focal_length": ("Focal Length", "Millimetres on a 36 mm sensor (low, high)"),
    "camera.jitter": ("Jitter", "Metres of random offset of the look-at point"),
    "camera.fit_objects": ("Fit Objects", "Move back until every object's centre is in the frame"),
    "world.gradient_probability": ("Gradient Sky", "Chance of a gradient sky (else a plain colour) for images without an HDRI"),
    "world.strength": ("Strength", "Strength of the gradient or plain world (low, high)"),
    "world.ground": ("Ground", "A ground plane under the objects (photo backplates need it)"),
    "world.ground_size": ("Ground Size", "Side of the ground plane in metres"),
    "world.hdri_dir": ("HDRI Folder", "Equirectangular .hdr/.exr/.png/.jpg environments; empty = none"),
    "world.hdri_probability": ("HDRI", "Chance of an HDRI environment when an HDRI Folder is set"),
    "world.hdri_strength": ("HDRI Strength", "Background strength of the HDRI (low, high)"),
    "world.hdri_rotation": ("HDRI Rotation", "Degrees about the vertical axis (low, high)"),
    "backplate.photos_dir": ("Photo Folder", "Photographs behind the scene, with the objects' shadows on them; empty = none"),
    "backplate.probability": ("Photo", "Chance of a photo for an image whose camera sees no horizon"),
    "backplate.horizon_margin": ("Horizon Margin", "Degrees the frame's top edge must look down to get a photo"),
    "textures.textures_dir": ("Texture Folder", "Texture sets (Poly Haven / ambientCG names); empty = none"),
    "textures.ground_probability": ("Ground Texture", "Chance of a texture set on the ground"),
    "textures.distractor_probability": ("Distractor Texture", "Chance of a texture set on a distractor"),
    "textures.object_probability": ("Object Texture", "Chance of a texture set on an object with the random palette"),
    "textures.tile_size": ("Tile Size", "One repeat of a texture on an object (low, high)"),
    "textures.ground_tile_size": ("Ground Tile Size", "One repeat of a texture on the ground in metres (low, high)"),
    "textures.asset_hue_jitter": ("Asset Hue Jitter", "Hue shift of the assets' own materials (share of the wheel)"),
    "textures.asset_value_jitter": ("Asset Value Jitter", "Brightness scale of the assets' own materials (1 +- this)"),
    "textures.asset_roughness_jitter": ("Asset Roughness Jitter", "Added to the assets' own roughness (+-)"),
    "physics.enabled": ("Physics", "Drop the objects onto the ground with the rigid-body simulation"),
    "physics.drop_height": ("Drop Height", "Metres above the ground the objects start from (low, high)"),
    "physics.frames": ("Frames", "Simulated frames at 24 fps before the render"),
    "sequence.frames": ("Frames per Scene", "Each scene as a video of this many images (1: still images); "
                        "Images must be a multiple of it"),
    "sequence.fps": ("FPS", "Frames per second of the videos (the motion below is per second)"),
    "sequence.physics": ("Start", "Settled: start from the settled scene; Falling: show the physics drop"),
    "sequence.object_speed": ("Object Speed", "Metres per second along the ground, random heading (low, high)"),
    "sequence.object_spin": ("Object Spin", "Degrees per second about the vertical, random sign (low, high)"),
    "sequence.camera_orbit": ("Camera Orbit", "Degrees per second about the look-at point, random sign (low, high)"),
    "sequence.camera_dolly": ("Camera Dolly", "Metres per second along the view axis, negative: closer (low, high)"),
    "render.device": ("Device", "Cycles device"),
    "render.max_bounces": ("Max Bounces", "Cycles light bounces of the RGB render"),
    "render.depth": ("Depth", "Write depth/NNNNNN.exr (metres)"),
    "render.antialias": ("Antialias", "Keep the RGB's anti-aliasing (the labels come from a separate "
                         "pixel-centre render); off: one render serves both, cheaper"),
    "output.mask_format": ("Mask Format", "Segmentation format of the merged COCO files"),
    "output.export_yolo": ("YOLO", "Also write ultralytics YOLO-seg labels and dataset.yaml"),
    "output.export_semantic": ("Semantic", "Also write semantic/ category maps"),
    "output.export_panoptic": ("Panoptic", "Also write COCO panoptic PNGs and panoptic*.json"),
    "output.preview": ("Preview", "Write preview.png, a contact sheet of the first images"),
    "lens.dof_probability": ("Depth of Field", "Chance of depth of field (focus on a random visible object)"),
    "lens.fstop": ("F-Stop", "F-number of the depth of field (low, high)"),
    "lens.motion_blur_probability": ("Motion Blur", "Chance of motion blur"),
    "lens.shutter": ("Shutter", "Open time in frames, centred on the frame (low, high)"),
    "lens.object_motion": ("Object Motion", "Metres an object travels per frame (low, high)"),
    "lens.camera_motion": ("Camera Motion", "Metres the camera travels per frame (low, high)"),
    "sensor.noise_probability": ("Noise", "Chance of sensor noise"),
    "sensor.noise": ("Noise Sigma", "Noise sigma at white, linear (low, high)"),
    "sensor.exposure_probability": ("Exposure", "Chance of an exposure change"),
    "sensor.exposure": ("Exposure Stops", "Stops of brightness change (low, high)"),
    "sensor.white_balance_probability": ("White Balance", "Chance of a white-balance shift"),
    "sensor.white_balance": ("White Balance Stops", "Stops of red gain, blue the opposite (low, high)"),
    "sensor.jpeg_probability": ("JPEG", "Chance that an image is written as JPEG instead of PNG"),
    "sensor.jpeg_quality": ("JPEG Quality", "JPEG quality 1..100 (low, high)"),
    "looks.plain_probability": ("Plain Images", "Chance that an image gets none of the looks (HDRI, photo, "
                                "textures, lens, sensor), whatever their own chances: keeps a model good on plain renders"),
}

# Sub-panels of the Dataset section: (id, label, the config sections drawn in it)
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("objects", "Objects & Source", ("objects", "distractors")),
    ("camera", "Camera", ("camera",)),
    ("lights", "Lights", ("lights",)),
    ("materials", "Materials", ("materials",)),
    ("world", "World & Backplate", ("looks", "world", "backplate", "textures")),
    ("lens", "Lens & Sensor", ("lens", "sensor")),
    ("physics", "Physics", ("physics",)),
    ("sequence", "Sequences", ("sequence",)),
    ("render", "Render", ("render",)),
    ("output", "Output", ("output",)),
)


def _defaults() -> dict[str, Any]:
    return GeneratorConfig().to_dict()


SECTIONS: tuple[str, ...] = tuple(name for name, value in _defaults().items() if isinstance(value, dict))


def _is_pair(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def _widget_kind(key: str, value: Any) -> str | None:
    """What widget a stored value gets, or None when it fits none (config-file only)."""
    if key in ENUMS:
        return "enum"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "dir" if key.endswith("_dir") else None
    if _is_pair(value):
        return "int_pair" if all(isinstance(v, int) for v in value) else "float_pair"
    return None


def fields(section: str) -> list[str]:
    """The field names of ``section`` that the panel shows (stored form, config order)."""
    return [name for name, value in _defaults()[section].items()
            if f"{section}.{name}" not in PANEL_OWNED and _widget_kind(f"{section}.{name}", value) is not None]


def config_only(section: str) -> list[str]:
    """The field names of ``section`` that only a config file sets (lists and tables)."""
    return [name for name, value in _defaults()[section].items()
            if f"{section}.{name}" not in PANEL_OWNED and _widget_kind(f"{section}.{name}", value) is None]


def label(key: str) -> str:
    """The panel's name of config key ``section.field``."""
    return FIELDS.get(key, (key.split(".")[-1].replace("_", " ").title(), ""))[0]


def _property(key: str, value: Any) -> Any:
    name, help_text = FIELDS.get(key, (label(key), f"Config key {key}"))
    kind = _widget_kind(key, value)
    common: dict[str, Any] = {"name": name, "description": help_text}
    if kind == "enum":
        return EnumProperty(items=list(ENUMS[key]), default=value, **common)
    if kind == "bool":
        return BoolProperty(default=value, **common)
    if kind == "int":
        return IntProperty(default=value, min=0, soft_max=max(100, 4 * value), **common)
    if kind == "float":
        if key.endswith("probability") or key.split(".")[-1] in ("linked_duplicates", "min_visible_fraction"):
            return FloatProperty(default=value, min=0.0, max=1.0, subtype="FACTOR", **common)
        return FloatProperty(default=value, min=0.0, soft_max=max(1.0, 4 * value), **common)
    if kind == "dir":
        return StringProperty(default=value, subtype="DIR_PATH", **common)
    if kind == "int_pair":
        return IntVectorProperty(size=2, default=tuple(value), min=0, **common)
    return FloatVectorProperty(size=2, default=tuple(value), precision=3, **common)


def _section_class(section: str) -> type:
    defaults = _defaults()[section]
    annotations = {name: _property(f"{section}.{name}", defaults[name]) for name in fields(section)}
    doc = f"The generator's [{section}] settings (core.genconfig), as the panel shows them."
    return type(f"InstSegConfig_{section}", (bpy.types.PropertyGroup,), {"__annotations__": annotations, "__doc__": doc})


SECTION_CLASSES: tuple[type, ...] = tuple(_section_class(section) for section in SECTIONS)

InstSegGeneratorSettings = type(
    "InstSegGeneratorSettings", (bpy.types.PropertyGroup,),
    {"__annotations__": {section: PointerProperty(type=cls) for section, cls in zip(SECTIONS, SECTION_CLASSES)},
     "__doc__": "Every generator config section the panel sets (Scene.instseg.generator)."})

classes: tuple[type, ...] = (*SECTION_CLASSES, InstSegGeneratorSettings)


# -- values ---------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A property value as the config stores it: floats rounded to what a float32 holds (6 digits)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, (int, bool, str)):
        return value
    return [_plain(v) for v in value]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    return bool(a == b)


def panel_values(generator: Any) -> dict[str, dict[str, Any]]:
    """Every panel-shown field's value, in the config's stored form ({section: {field: value}});
    folder settings made absolute (Blender's ``//`` relative paths)."""
    values: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        group = getattr(generator, section)
        out: dict[str, Any] = {}
        for name in fields(section):
            value = _plain(getattr(group, name))
            if name.endswith("_dir") and value.strip():
                value = bpy.path.abspath(value.strip())
            out[name] = value
        values[section] = out
    return values


def overrides(generator: Any) -> dict[str, dict[str, Any]]:
    """Only the fields that differ from the generator's defaults (what Generate writes to its --config)."""
    defaults = _defaults()
    diff: dict[str, dict[str, Any]] = {}
    for section, values in panel_values(generator).items():
        changed = {k: v for k, v in values.items() if not _same(v, defaults[section][k])}
        if changed:
            diff[section] = changed
    return diff


def apply(generator: Any, cfg: GeneratorConfig) -> None:
    """Set every panel-shown field from ``cfg`` (Load Config)."""
    stored = cfg.to_dict()
    for section in SECTIONS:
        group = getattr(generator, section)
        for name in fields(section):
            value = stored[section][name]
            setattr(group, name, tuple(value) if isinstance(value, list) else value)


def reset(generator: Any) -> None:
    """Every panel-shown field back to the generator's default."""
    for section in SECTIONS:
        group = getattr(generator, section)
        for name in fields(section):
            group.property_unset(name)
