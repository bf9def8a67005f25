"""Every knob of the scene generator, as plain dataclasses (no bpy) so the panel, the CLI and tests share them.

A config is loaded from JSON or TOML (``load_config``), overridden by CLI flags, validated once
(``GeneratorConfig.validate`` raises ``ValueError`` with a one-line message) and stored verbatim in
the dataset's ``config.json``, so a dataset can be reproduced from its own folder.

Ranges are ``[low, high]`` pairs sampled uniformly. Categories come only from the declared label map
``shapes`` (shape -> category name); object names never decide a label.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import formats

PRIMITIVES = ("cube", "sphere", "cylinder", "cone", "torus", "monkey")
ASSET_PREFIX = "asset:"  # a mesh bundled in the add-on's assets/ folder: "asset:gear" -> assets/gear.obj
FILE_PREFIX = "file:"  # the user's asset file, relative to objects.assets_dir: "file:chairs/oak.glb"
BLEND_PREFIX = "blend:"  # a template of objects.blend_file: "blend:<category collection>/<object or collection>"
# Files Blender imports with its own importers (blender/scene/assets.py); USD where the build has it.
ASSET_FILE_SUFFIXES = (".blend", ".obj", ".glb", ".gltf", ".fbx", ".ply", ".stl", ".usd", ".usda", ".usdc", ".usdz")
PLACEMENTS = ("free", "upright")
PER_CATEGORY_KEYS = ("placement", "real_size", "count", "physics")  # what objects.per_category may set
MIN_CAMERA_DISTANCE = 0.5  # metres: the closest a sequence's camera dolly may bring the camera to its target


def _default_shapes() -> dict[str, str]:
    shapes = {name: name for name in PRIMITIVES}
    shapes.update({f"{ASSET_PREFIX}gear": "gear", f"{ASSET_PREFIX}star": "star", f"{ASSET_PREFIX}vase": "vase"})
    return shapes


def _default_categories() -> list[str]:
    return [*PRIMITIVES, "gear", "star", "vase"]


@dataclass
class ObjectsConfig:
    """How many objects, which shapes, and how they are placed."""

    min_count: int = 5
    max_count: int = 20
    # label map: shape key -> category name. Keys are primitive names, "asset:<file stem>" (the bundled
    # assets/ folder) or "file:<path relative to assets_dir>" (the user's files, any ASSET_FILE_SUFFIXES).
    shapes: dict[str, str] = field(default_factory=_default_shapes)
    assets_dir: str = ""  # the folder "file:" keys are relative to (scripts/generate.py --assets DIR)
    blend_file: str = ""  # the .blend of "blend:" keys (scripts/generate.py --blend FILE)
    # "free": a uniformly random 3D rotation; "upright": a random turn about the vertical axis only, so
    # the asset keeps the up axis it was modelled with (chairs stand, bottles stay up)
    placement: str = "free"
    # True: every object keeps its mesh's own size in metres (scale ignored); False: its largest
    # half-extent is drawn from scale
    real_size: bool = False
    # per-category overrides of placement / real_size / physics (falls with physics.* settings, or
    # stands where placed as an obstacle the others land on), and a count [low, high] of objects of
    # that category per scene, e.g. {"chair": {"placement": "upright", "count": [1, 3]}}
    per_category: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "file:" assets keep the materials they were imported with (textures, UVs); False: the random palette
    keep_asset_materials: bool = True
    # every imported mesh ("file:" and "blend:" shapes, objects and distractors) with more triangles is
    # simplified to at most this many once, at import (Blender's Decimate modifier); 0 keeps them all.
    # Dense scans render slowly on a CPU; the masks stay exact (they come from the simplified mesh)
    max_triangles: int = 0
    scale: list[float] = field(default_factory=lambda: [0.35, 0.8])  # size of the object's largest half-extent, metres
    scatter_radius: float = 2.2  # objects are placed in a disc of this radius on the ground
    linked_duplicates: float = 0.0  # probability that an object reuses the previous object's mesh+material (tests)
    allow_hidden: bool = False  # keep fully occluded / outside-frame objects without trying to move them
    max_resample: int = 4  # tries to move a hidden object into view before it is recorded in hidden[]
    # an object needs this many visible pixels AND this fraction of its amodal area visible to be
    # annotated; below either it is recorded in hidden[] ("too_little_visible") and its pixels are background
    min_visible_pixels: int = 4
    min_visible_fraction: float = 0.01
    float_height: list[float] = field(default_factory=lambda: [0.0, 0.0])  # extra height above the ground (no physics)


@dataclass
class DistractorsConfig:
    """Objects that are rendered and occlude the others but are never annotated: their pixels are
    background in the id map, and they lower the visible_fraction of what they cover."""

    # shape keys as in objects.shapes: primitives, "asset:<name>", "file:<path under assets_dir>"
    shapes: list[str] = field(default_factory=list)
    assets_dir: str = ""  # the folder of "file:" distractors (scripts/generate.py --distractors DIR)
    min_count: int = 0
    max_count: int = 0
    scale: list[float] = field(default_factory=lambda: [0.35, 0.8])  # largest half-extent, metres
    placement: str = "free"  # "free" or "upright", as objects.placement
    keep_asset_materials: bool = True


@dataclass
class MaterialConfig:
    roughness: list[float] = field(default_factory=lambda: [0.1, 0.9])
    metallic_probability: float = 0.25
    texture_probability: float = 0.5  # chance of a procedural noise/voronoi texture mixing two colours
    saturation: list[float] = field(default_factory=lambda: [0.3, 1.0])
    value: list[float] = field(default_factory=lambda: [0.25, 0.95])
    # transparency (objects with the random palette only; drawn from the "transparency" stream):
    # chance of a clear glass material (refraction, Transmission 1), and of an alpha-cut material
    # (the palette material with holes where a noise pattern clips its alpha to 0)
    glass_probability: float = 0.0
    alpha_cut_probability: float = 0.0
    # what the labels of such objects cover: "footprint" = every pixel of the object's geometry (holes
    # included); "opaque" = only where its alpha is >= 0.5 (Cycles' pass_alpha_threshold), so holes show
    # what is behind. Glass refracts, it has no alpha: it is labelled by its footprint either way.
    transparency_labels: str = "footprint"


TRANSPARENCY_LABELS = ("footprint", "opaque")


@dataclass
class LightConfig:
    min_count: int = 1
    max_count: int = 3
    types: list[str] = field(default_factory=lambda: ["SUN", "POINT", "AREA", "SPOT"])
    sun_strength: list[float] = field(default_factory=lambda: [1.0, 4.0])
    energy: list[float] = field(default_factory=lambda: [200.0, 1000.0])  # watts for point/area/spot
    saturation: list[float] = field(default_factory=lambda: [0.0, 0.3])  # light colour tint


@dataclass
class CameraConfig:
    distance: list[float] = field(default_factory=lambda: [6.0, 9.0])  # metres from the objects' centre
    elevation: list[float] = field(default_factory=lambda: [25.0, 70.0])  # degrees above the ground
    focal_length: list[float] = field(default_factory=lambda: [35.0, 50.0])  # mm on a 36 mm sensor
    jitter: float = 0.3  # metres of random offset of the look-at point
    fit_objects: bool = True  # move back (beyond distance) until every object's centre is inside the frame


@dataclass
class WorldConfig:
    """The world (background and ambient light) of each image: an HDRI, a gradient sky or a plain colour.

    With ``hdri_dir`` set, an image gets an HDRI environment with ``hdri_probability``; every other
    image gets the gradient sky with ``gradient_probability``, else a plain colour.
    """

    gradient_probability: float = 0.5
    strength: list[float] = field(default_factory=lambda: [0.2, 0.8])
    ground: bool = True
    ground_size: float = 40.0
    # equirectangular environments (.hdr .exr .png .jpg, any depth of subfolders) lighting the scene
    # and seen as its background (scripts/generate.py --hdri DIR); "" = none
    hdri_dir: str = ""
    hdri_probability: float = 1.0
    hdri_strength: list[float] = field(default_factory=lambda: [0.6, 1.5])  # the Background shader's strength
    hdri_rotation: list[float] = field(default_factory=lambda: [0.0, 360.0])  # degrees about the vertical axis


@dataclass
class BackplateConfig:
    """Photographs behind the scene (scripts/generate.py --backgrounds DIR): the ground becomes a
    shadow catcher, the render is composited over the photo, and the objects' shadows darken it.

    A photo needs a camera that looks down on the ground as the photo's camera did: only images
    whose frame shows no horizon (its top edge looks down by ``horizon_margin`` degrees or more)
    get one, so the camera, and with it the labels, stay exactly what the seed drew.
    """

    photos_dir: str = ""  # .png .jpg .jpeg .tif .tiff under it, any depth; "" = none
    probability: float = 1.0  # chance of a photo for an image whose camera sees no horizon
    horizon_margin: float = 5.0  # degrees


@dataclass
class TexturesConfig:
    """Image texture sets (scripts/generate.py --textures DIR) in Poly Haven / ambientCG naming:
    a colour map (``*_diff*`` / ``*Color*``) and optional roughness (``*_rough*`` / ``*Roughness*``)
    and OpenGL normal maps (``*_nor_gl*`` / ``*NormalGL*``, used on the ground)."""

    textures_dir: str = ""  # "" = none
    ground_probability: float = 1.0
    distractor_probability: float = 1.0
    object_probability: float = 0.3  # objects with the random palette (the assets' own materials are kept)
    tile_size: list[float] = field(default_factory=lambda: [0.5, 2.0])  # one repeat of the texture, in the object's units
    ground_tile_size: list[float] = field(default_factory=lambda: [1.0, 4.0])  # metres on the ground
    # assets that keep their own materials: each object's copy has its hue shifted by up to
    # +- asset_hue_jitter (of the colour wheel), its value scaled by 1 +- asset_value_jitter and
    # asset_roughness_jitter added to its roughness (+-); 0 = the materials exactly as imported
    asset_hue_jitter: float = 0.0
    asset_value_jitter: float = 0.0
    asset_roughness_jitter: float = 0.0


@dataclass
class PhysicsConfig:
    enabled: bool = False
    drop_height: list[float] = field(default_factory=lambda: [0.5, 3.0])
    frames: int = 60  # simulated frames at 24 fps before rendering


@dataclass
class RenderConfig:
    resolution: list[int] = field(default_factory=lambda: [256, 256])  # width, height
    samples: int = 16
    masks_only: bool = False
    device: str = "auto"  # auto | cpu | gpu
    max_bounces: int = 6
    depth: bool = True
    # True: the RGB render keeps Cycles' 1.5 px anti-aliasing filter and the labels (index, depth)
    # come from a separate 1-sample pixel-centre render; False: one render with a 0.01 px filter
    # serves both (cheaper, but the RGB is aliased)
    antialias: bool = True


@dataclass
class LensConfig:
    """Camera effects of the RGB render (never of the labels): depth of field and motion blur, each
    switched on per image with its probability; every draw comes from the "lens" stream."""

    dof_probability: float = 0.0
    fstop: list[float] = field(default_factory=lambda: [0.05, 0.5])  # f-number; focus: a random visible object
    motion_blur_probability: float = 0.0
    shutter: list[float] = field(default_factory=lambda: [0.3, 1.0])  # open time in frames, centred on the frame
    object_motion: list[float] = field(default_factory=lambda: [0.0, 0.3])  # metres an object travels per frame
    camera_motion: list[float] = field(default_factory=lambda: [0.0, 0.1])  # metres the camera travels per frame


@dataclass
class SensorConfig:
    """Sensor and file effects on the written RGB (never on the id map), each switched on per image
    with its probability; every draw comes from the "sensor" stream."""

    noise_probability: float = 0.0
    noise: list[float] = field(default_factory=lambda: [0.005, 0.03])  # noise sigma at white, linear (0..1)
    exposure_probability: float = 0.0
    exposure: list[float] = field(default_factory=lambda: [-1.0, 1.0])  # stops (EV) of brightness change
    white_balance_probability: float = 0.0
    white_balance: list[float] = field(default_factory=lambda: [-0.3, 0.3])  # stops of red gain (blue: the opposite)
    jpeg_probability: float = 0.0  # the image is written as images/NNNNNN.jpg instead of .png
    jpeg_quality: list[int] = field(default_factory=lambda: [60, 95])  # 1..100


@dataclass
class LooksConfig:
    """How the realistic looks (HDRI, photo backplate, texture sets, lens and sensor effects) mix
    with the default look over a dataset.

    ``plain_probability``: the chance that an image (a video: all its frames) gets none of them,
    whatever their own chances: the default look of procedural colours, gradient or plain world,
    grey ground and a clean sensor. The draw has its own stream ("looks"), and the parts draw as
    always, so labels and every other draw stay what the seed gave. Why: a model trained only on
    randomised looks loses accuracy on plain renders; half plain images keeps most of it while the
    model learns the realistic looks (docs/benchmarks.md, "Look shift").
    """

    plain_probability: float = 0.0


SEQUENCE_PHYSICS = ("settled", "falling")


@dataclass
class SequenceConfig:
    """Scenes as short videos (``--frames N``): each procedural scene is rendered as ``frames`` images
    that keep their objects, ids and track ids, while the objects and the camera move.

    Motion is in units per second of video at ``fps``; every draw comes from the scene's "motion"
    stream, so it never changes the scene itself. ``physics = "falling"`` (with physics on) shows
    the rigid-body drop instead of starting from the settled scene. With ``frames = 1`` nothing
    moves and every image is the still image it always was.
    """

    frames: int = 1  # images per scene
    fps: float = 24.0
    physics: str = "settled"  # "settled": frame 0 is the settled scene; "falling": the frames show the drop
    object_speed: list[float] = field(default_factory=lambda: [0.0, 0.5])  # m/s along the ground, random heading
    object_spin: list[float] = field(default_factory=lambda: [0.0, 90.0])  # deg/s about the vertical, random sign
    camera_orbit: list[float] = field(default_factory=lambda: [0.0, 15.0])  # deg/s about the look-at point, random sign
    camera_dolly: list[float] = field(default_factory=lambda: [-0.3, 0.3])  # m/s along the view axis (< 0: closer)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last."""
        return (self.frames - 1) / self.fps


def export_switch(name: str) -> str:
    """The config key that turns output format ``name`` on: ``export_<name>``."""
    return f"export_{name}"


@dataclass
class OutputConfig:
    """What is written besides the images and records.

    ``exports`` are the optional formats written after the merge: names of ``core.formats.FORMATS``,
    kept in table order. Config files and config.json spell them as one switch per format of the
    table, ``export_<name> = true/false`` (``to_dict`` / ``fields_from_stored``): a new format gets
    its config key from its table row, and the configs of existing datasets load as they did.
    """

    mask_format: str = "rle"  # rle | polygon (merged COCO; records always hold RLE)
    val_fraction: float = 0.0
    exports: list[str] = field(default_factory=list)
    preview: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The stored form: ``exports`` becomes an ``export_<name>`` switch per format of the table."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "exports":
                data.update({export_switch(name): name in self.exports for name in formats.FORMATS})
            else:
                data[f.name] = copy.deepcopy(getattr(self, f.name))
        return data

    @classmethod
    def fields_from_stored(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """Field values from the stored form (the ``export_<name>`` switches -> ``exports``); a key
        that is neither a field nor a format's switch is an error, as in every other section."""
        known = list(cls().to_dict())
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown key {where}.{unknown[0]} (known: {', '.join(known)})")
        switches = {export_switch(name): name for name in formats.FORMATS}
        values = {k: v for k, v in data.items() if k not in switches}
        for key, on in data.items():
            if key in switches and not isinstance(on, bool):
                raise ValueError(f"{where}.{key} must be true or false, got {on!r}")
        values["exports"] = [name for key, name in switches.items() if data.get(key)]
        return values

    def add_exports(self, names: Iterable[str]) -> None:
        """Turn formats on (never off: a config may ask for more than the flags); ``ValueError`` for an unknown name."""
        wanted = set(self.exports) | set(names)
        formats.check_names(sorted(wanted))
        self.exports = [name for name in formats.FORMATS if name in wanted]


@dataclass
class GeneratorConfig:
    """The whole generator configuration; ``categories`` fixes category ids (id = position + 1)."""

    categories: list[str] = field(default_factory=_default_categories)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    distractors: DistractorsConfig = field(default_factory=DistractorsConfig)
    materials: MaterialConfig = field(default_factory=MaterialConfig)
    lights: LightConfig = field(default_factory=LightConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    backplate: BackplateConfig = field(default_factory=BackplateConfig)
    textures: TexturesConfig = field(default_factory=TexturesConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    lens: LensConfig = field(default_factory=LensConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    looks: LooksConfig = field(default_factory=LooksConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)

    # -- conversions -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output"] = self.output.to_dict()  # the export switches, as config files spell them
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        """Build from a (possibly partial) dict; unknown keys are an error so typos never pass silently."""
        if not isinstance(data, dict):
            raise ValueError("generator config must be a JSON/TOML object")
        cfg = _build(cls, data, "config")
        return cfg

    def copy(self) -> "GeneratorConfig":
        return copy.deepcopy(self)

    def plain_look(self) -> "GeneratorConfig":
        """A copy whose look parts never switch on (``looks.plain_probability``'s plain images):
        every chance of an HDRI, photo, texture set, lens or sensor effect is 0 and the assets' own
        materials are not jittered. The folders stay, so the parts draw exactly as before."""
        cfg = self.copy()
        cfg.world.hdri_probability = 0.0
        cfg.backplate.probability = 0.0
        t = cfg.textures
        t.ground_probability = t.distractor_probability = t.object_probability = 0.0
        t.asset_hue_jitter = t.asset_value_jitter = t.asset_roughness_jitter = 0.0
        cfg.lens.dof_probability = cfg.lens.motion_blur_probability = 0.0
        for name in ("noise", "exposure", "white_balance", "jpeg"):
            setattr(cfg.sensor, f"{name}_probability", 0.0)
        return cfg

    def category_id(self, shape: str) -> int:
        return self.categories.index(self.objects.shapes[shape]) + 1

    def coco_categories(self) -> list[dict[str, Any]]:
        return [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(self.categories)]

    # -- checks ------------------------------------------------------------------------------------------------
    def validate(self) -> "GeneratorConfig":
        """Raise ``ValueError`` (one line) for any impossible setting; returns self for chaining."""
        o = self.objects
        _check(o.min_count >= 0, f"objects.min_count must be >= 0, got {o.min_count}")
        _check(o.max_count >= 0, f"objects.max_count must be >= 0, got {o.max_count}")
        _check(o.min_count <= o.max_count, f"objects.min_count ({o.min_count}) > objects.max_count ({o.max_count})")
        _check(o.max_count <= 32767, "objects.max_count must be <= 32767 (Blender pass_index limit)")
        _check(o.max_count <= 65535, "objects.max_count must fit a 16-bit id map")
        _check(len(o.shapes) > 0, "objects.shapes (the label map) is empty")
        _check(len(self.categories) > 0, "categories is empty")
        _check(len(set(self.categories)) == len(self.categories), "categories has duplicate names")
        _check(all(isinstance(c, str) and c.strip() for c in self.categories), "category names must be non-empty")
        for shape, cat in o.shapes.items():
            _check(
                is_shape_key(shape),
                f"unknown shape {shape!r}: use one of {', '.join(PRIMITIVES)}, 'asset:<name>', "
                f"'file:<path>' with one of {', '.join(ASSET_FILE_SUFFIXES)} or 'blend:<collection>/<name>'",
            )
            _check(cat in self.categories, f"shape {shape!r} maps to category {cat!r}, which is not in categories")
        _check(not any(sh.startswith(BLEND_PREFIX) for sh in [*o.shapes, *self.distractors.shapes])
               or bool(o.blend_file.strip()), "shapes name 'blend:' templates but objects.blend_file is empty (use --blend FILE)")
        _check(not self.file_shapes() or bool(o.assets_dir.strip()),
               "objects.shapes names 'file:' assets but objects.assets_dir is empty (use --assets DIR)")
        _check(o.placement in PLACEMENTS, f"objects.placement must be one of {', '.join(PLACEMENTS)}, got {o.placement!r}")
        _check(isinstance(o.real_size, bool), "objects.real_size must be true or false")
        for cat, over in o.per_category.items():
            _check(cat in self.categories, f"objects.per_category names {cat!r}, which is not in categories")
            _check(isinstance(over, dict) and set(over) <= set(PER_CATEGORY_KEYS),
                   f"objects.per_category.{cat} may set {', '.join(PER_CATEGORY_KEYS)} only, got {over!r}")
            if "count" in over:
                count = over["count"]
                _check(isinstance(count, list) and len(count) == 2 and all(isinstance(v, int) for v in count)
                       and 0 <= count[0] <= count[1], f"objects.per_category.{cat}.count must be [low, high] "
                       f"integers with 0 <= low <= high, got {count!r}")
            _check(over.get("placement", "free") in PLACEMENTS,
                   f"objects.per_category.{cat}.placement must be one of {', '.join(PLACEMENTS)}")
            _check(isinstance(over.get("real_size", False), bool), f"objects.per_category.{cat}.real_size must be true or false")
            _check(isinstance(over.get("physics", False), bool), f"objects.per_category.{cat}.physics must be true or false")
        _range(o.scale, "objects.scale", positive=True)
        _range(o.float_height, "objects.float_height")
        _check(o.scatter_radius >= 0, "objects.scatter_radius must be >= 0")
        _check(0.0 <= o.linked_duplicates <= 1.0, "objects.linked_duplicates must be in [0, 1]")
        _check(o.max_resample >= 0, "objects.max_resample must be >= 0")
        _check(isinstance(o.min_visible_pixels, int) and o.min_visible_pixels >= 1,
               f"objects.min_visible_pixels must be an integer >= 1, got {o.min_visible_pixels!r}")
        _check(isinstance(o.max_triangles, int) and not isinstance(o.max_triangles, bool) and o.max_triangles >= 0,
               f"objects.max_triangles must be an integer >= 0 (0: keep every triangle), got {o.max_triangles!r}")
        _check(0.0 <= o.min_visible_fraction <= 1.0,
               f"objects.min_visible_fraction must be in [0, 1], got {o.min_visible_fraction}")
        d = self.distractors
        _check(0 <= d.min_count <= d.max_count,
               f"distractors: need 0 <= min_count <= max_count, got {d.min_count}, {d.max_count}")
        _check(d.max_count == 0 or len(d.shapes) > 0, "distractors.max_count > 0 but distractors.shapes is empty")
        most = o.max_count + sum(int(over["count"][1]) for over in o.per_category.values()
                                 if isinstance(over, dict) and isinstance(over.get("count"), list) and len(over["count"]) == 2
                                 and isinstance(over["count"][1], int))
        _check(most + d.max_count <= 32767,
               "objects.max_count + the per-category counts + distractors.max_count must be <= 32767")
        for shape in d.shapes:
            _check(is_shape_key(shape), f"unknown distractor shape {shape!r}")
        _check(not any(sh.startswith(FILE_PREFIX) for sh in d.shapes) or bool(d.assets_dir.strip()),
               "distractors.shapes names 'file:' assets but distractors.assets_dir is empty (use --distractors DIR)")
        _range(d.scale, "distractors.scale", positive=True)
        _check(d.placement in PLACEMENTS, f"distractors.placement must be one of {', '.join(PLACEMENTS)}")
        m = self.materials
        _range(m.roughness, "materials.roughness", unit=True)
        _range(m.saturation, "materials.saturation", unit=True)
        _range(m.value, "materials.value", unit=True)
        _check(0 <= m.metallic_probability <= 1, "materials.metallic_probability must be in [0, 1]")
        _check(0 <= m.texture_probability <= 1, "materials.texture_probability must be in [0, 1]")
        li = self.lights
        _check(0 <= li.min_count <= li.max_count, f"lights: need 0 <= min_count <= max_count, got {li.min_count}, {li.max_count}")
        _check(len(li.types) > 0, "lights.types is empty")
        for t in li.types:
            _check(t in ("SUN", "POINT", "AREA", "SPOT"), f"unknown light type {t!r}")
        _range(li.sun_strength, "lights.sun_strength")
        _range(li.energy, "lights.energy")
        _range(li.saturation, "lights.saturation", unit=True)
        c = self.camera
        _range(c.distance, "camera.distance", positive=True)
        _range(c.elevation, "camera.elevation")
        _check(-90 <= c.elevation[0] and c.elevation[1] <= 90, "camera.elevation must be within [-90, 90] degrees")
        _range(c.focal_length, "camera.focal_length", positive=True)
        _check(c.jitter >= 0, "camera.jitter must be >= 0")
        w = self.world
        _range(w.strength, "world.strength")
        _check(0 <= w.gradient_probability <= 1, "world.gradient_probability must be in [0, 1]")
        _check(w.ground_size > 0, "world.ground_size must be > 0")
        self._validate_world_looks()
        p = self.physics
        _range(p.drop_height, "physics.drop_height")
        _check(p.frames >= 1, "physics.frames must be >= 1")
        r = self.render
        _check(
            isinstance(r.resolution, list) and len(r.resolution) == 2 and all(int(v) == v for v in r.resolution),
            "render.resolution must be [width, height]",
        )
        _check(all(8 <= v <= 16384 for v in r.resolution), f"render.resolution must be within 8..16384, got {r.resolution}")
        _check(r.samples >= 1, f"render.samples must be >= 1, got {r.samples}")
        _check(r.device in ("auto", "cpu", "gpu"), f"render.device must be auto, cpu or gpu, got {r.device!r}")
        _check(r.max_bounces >= 0, "render.max_bounces must be >= 0")
        out = self.output
        _check(out.mask_format in ("rle", "polygon"), f"output.mask_format must be rle or polygon, got {out.mask_format!r}")
        _check(0.0 <= out.val_fraction < 1.0, f"output.val_fraction must be in [0, 1), got {out.val_fraction}")
        formats.check_names(out.exports)
        self._validate_camera_looks()
        self._validate_sequence()
        return self

    def _validate_sequence(self) -> None:
        """``sequence.*``: counts, ranges, and motions that cannot happen (the camera driven through its target)."""
        q = self.sequence
        _check(isinstance(q.frames, int) and 1 <= q.frames <= 100000,
               f"sequence.frames (--frames) must be an integer in [1, 100000], got {q.frames!r}")
        _check(isinstance(q.fps, (int, float)) and q.fps > 0, f"sequence.fps must be > 0, got {q.fps!r}")
        _check(q.physics in SEQUENCE_PHYSICS,
               f"sequence.physics must be one of {', '.join(SEQUENCE_PHYSICS)}, got {q.physics!r}")
        _range(q.object_speed, "sequence.object_speed")
        _range(q.object_spin, "sequence.object_spin")
        _range(q.camera_orbit, "sequence.camera_orbit")
        _range(q.camera_dolly, "sequence.camera_dolly", signed=True)
        closest = self.camera.distance[0] + min(q.camera_dolly[0], 0.0) * q.duration
        _check(closest >= MIN_CAMERA_DISTANCE,
               f"sequence.camera_dolly {q.camera_dolly} would bring the camera within {MIN_CAMERA_DISTANCE} m of "
               f"its target in {q.duration:g} s (camera.distance starts at {self.camera.distance[0]}): "
               "dolly slower or render fewer frames")

    def _validate_world_looks(self) -> None:
        """The HDRI, backplate and texture settings (the folders' contents are checked by generator/media.py)."""
        w, b, t = self.world, self.backplate, self.textures
        _check(0 <= w.hdri_probability <= 1, f"world.hdri_probability must be in [0, 1], got {w.hdri_probability}")
        _range(w.hdri_strength, "world.hdri_strength")
        _range(w.hdri_rotation, "world.hdri_rotation")
        _check(w.hdri_rotation[1] <= 360, f"world.hdri_rotation must be within [0, 360] degrees, got {w.hdri_rotation}")
        _check(0 <= b.probability <= 1, f"backplate.probability must be in [0, 1], got {b.probability}")
        _check(0 <= b.horizon_margin < 90, f"backplate.horizon_margin must be in [0, 90) degrees, got {b.horizon_margin}")
        _check(not b.photos_dir.strip() or w.ground,
               "backplate.photos_dir needs world.ground = true (the ground catches the objects' shadows)")
        for key in ("ground_probability", "distractor_probability", "object_probability"):
            value = getattr(t, key)
            _check(0 <= value <= 1, f"textures.{key} must be in [0, 1], got {value}")
        _range(t.tile_size, "textures.tile_size", positive=True)
        _range(t.ground_tile_size, "textures.ground_tile_size", positive=True)
        _check(0 <= t.asset_hue_jitter <= 0.5, f"textures.asset_hue_jitter must be in [0, 0.5], got {t.asset_hue_jitter}")
        _check(0 <= t.asset_value_jitter <= 1, f"textures.asset_value_jitter must be in [0, 1], got {t.asset_value_jitter}")
        _check(0 <= t.asset_roughness_jitter <= 1,
               f"textures.asset_roughness_jitter must be in [0, 1], got {t.asset_roughness_jitter}")

    def _validate_camera_looks(self) -> None:
        """Camera, sensor and transparency settings (LensConfig, SensorConfig, materials.*)."""
        m = self.materials
        for name in ("glass_probability", "alpha_cut_probability"):
            _probability(getattr(m, name), f"materials.{name}")
        _check(m.transparency_labels in TRANSPARENCY_LABELS, f"materials.transparency_labels must be one of "
               f"{', '.join(TRANSPARENCY_LABELS)}, got {m.transparency_labels!r}")
        _check(not (self.render.masks_only and m.transparency_labels == "opaque" and m.alpha_cut_probability > 0),
               "materials.transparency_labels = 'opaque' needs the materials, which render.masks_only does not build")
        le = self.lens
        _probability(le.dof_probability, "lens.dof_probability")
        _probability(le.motion_blur_probability, "lens.motion_blur_probability")
        _range(le.fstop, "lens.fstop", positive=True)
        _range(le.shutter, "lens.shutter", positive=True)
        _range(le.object_motion, "lens.object_motion")
        _range(le.camera_motion, "lens.camera_motion")
        se = self.sensor
        for name in ("noise", "exposure", "white_balance", "jpeg"):
            _probability(getattr(se, f"{name}_probability"), f"sensor.{name}_probability")
        _probability(self.looks.plain_probability, "looks.plain_probability")
        _range(se.noise, "sensor.noise")
        _range(se.exposure, "sensor.exposure", signed=True)
        _range(se.white_balance, "sensor.white_balance", signed=True)
        _range(se.jpeg_quality, "sensor.jpeg_quality")
        _check(all(isinstance(q, int) and 1 <= q <= 100 for q in se.jpeg_quality),
               f"sensor.jpeg_quality must be integers within 1..100, got {se.jpeg_quality}")

    def asset_names(self) -> list[str]:
        shapes = [*self.objects.shapes, *self.distractors.shapes]
        return sorted({s[len(ASSET_PREFIX):] for s in shapes if s.startswith(ASSET_PREFIX)})

    def file_shapes(self) -> list[str]:
        """The "file:" shape keys (the user's asset files), sorted."""
        return sorted(s for s in self.objects.shapes if s.startswith(FILE_PREFIX))

    def blend_shapes(self) -> list[str]:
        """The "blend:" templates (objects and distractors) of objects.blend_file, sorted."""
        return sorted(s for s in {*self.objects.shapes, *self.distractors.shapes} if s.startswith(BLEND_PREFIX))

    def source_of(self, shape: str, files_dir: str) -> str:
        """Where a shape's mesh comes from: the .blend of a "blend:" key, else ``files_dir`` (the
        folder of "file:" keys of its section)."""
        return self.objects.blend_file if shape.startswith(BLEND_PREFIX) else files_dir

    def distractor_file_shapes(self) -> list[str]:
        """The "file:" distractor shapes (relative to distractors.assets_dir), sorted."""
        return sorted(s for s in self.distractors.shapes if s.startswith(FILE_PREFIX))

    def placement_of(self, shape: str) -> str:
        """'free' or 'upright' for this shape's category (per_category first, then objects.placement)."""
        over = self.objects.per_category.get(self.objects.shapes[shape], {})
        return str(over.get("placement", self.objects.placement))

    def real_size_of(self, shape: str) -> bool:
        over = self.objects.per_category.get(self.objects.shapes[shape], {})
        return bool(over.get("real_size", self.objects.real_size))

    def physics_of(self, shape: str) -> bool:
        """Whether objects of this shape's category fall (per_category first, then physics.enabled)."""
        over = self.objects.per_category.get(self.objects.shapes[shape], {})
        return bool(over.get("physics", self.physics.enabled))

    def simulates(self) -> bool:
        """Whether the rigid-body simulation runs: physics is on, or on for some category."""
        return self.physics.enabled or any(bool(over.get("physics")) for over in self.objects.per_category.values()
                                           if isinstance(over, dict))


def is_shape_key(shape: str) -> bool:
    """A primitive, ``asset:<name>``, ``file:<path>`` with an importable suffix, or ``blend:<collection>/<name>``."""
    return (shape in PRIMITIVES or (shape.startswith(ASSET_PREFIX) and len(shape) > len(ASSET_PREFIX))
            or (shape.startswith(FILE_PREFIX) and shape.lower().endswith(ASSET_FILE_SUFFIXES))
            or (shape.startswith(BLEND_PREFIX) and "/" in shape))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _probability(value: Any, name: str) -> None:
    _check(isinstance(value, (int, float)) and 0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value!r}")


def _range(value: Any, name: str, *, positive: bool = False, unit: bool = False, signed: bool = False) -> None:
    _check(
        isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value),
        f"{name} must be a [low, high] pair of numbers",
    )
    lo, hi = value
    _check(lo <= hi, f"{name}: low ({lo}) > high ({hi})")
    if positive:
        _check(lo > 0, f"{name} must be > 0")
    elif not (signed or name.endswith("elevation")):
        _check(lo >= 0, f"{name} must be >= 0")
    if unit:
        _check(0 <= lo and hi <= 1, f"{name} must be within [0, 1]")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Recursively build dataclass ``cls`` from ``data``, checking names and basic types."""
    if cls is OutputConfig:
        data = OutputConfig.fields_from_stored(data, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key {where}.{unknown[0]} (known: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        default = getattr(defaults, name)
        path = f"{where}.{name}"
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ValueError(f"{path} must be a table/object")
            kwargs[name] = _build(type(default), value, path)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{path} must be true or false, got {value!r}")
            kwargs[name] = value
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{path} must be an integer, got {value!r}")
            kwargs[name] = value
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{path} must be a number, got {value!r}")
            kwargs[name] = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError(f"{path} must be a string, got {value!r}")
            kwargs[name] = value
        elif isinstance(default, list):
            if not isinstance(value, list):
                raise ValueError(f"{path} must be a list, got {value!r}")
            kwargs[name] = list(value)
        elif isinstance(default, dict):
            # objects.shapes maps names to names; per_category maps a category to its own table of
            # settings (checked by validate), as a dataset's config.json stores it
            nested = name == "per_category"
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, dict if nested else str) for k, v in value.items()):
                raise ValueError(f"{path} must be a table of {'tables' if nested else 'strings'}")
            kwargs[name] = copy.deepcopy(value)
        else:  # pragma: no cover - every field type is handled above
            kwargs[name] = value
    return cls(**kwargs)


def load_config(path: str | Path) -> GeneratorConfig:
    """Load a JSON or TOML file (by suffix) into a validated config; one-line ``ValueError`` on any problem.

    A dataset's own ``config.json`` also loads: its ``generator`` section is used.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file not found: {p}")
    try:
        if p.suffix.lower() == ".toml":
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        else:
            with p.open("r", encoding="utf-8") as fh:
                data = json.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config is not valid TOML: {p} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"config is not valid JSON: {p} (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"config is not UTF-8 text: {p}") from None
    if isinstance(data, dict) and "generator" in data and isinstance(data["generator"], dict):
        data = data["generator"]
    return GeneratorConfig.from_dict(data).validate()
