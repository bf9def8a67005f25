"""The whole generator in the panel: config-section settings built from genconfig, Generate's --config,
Load/Save Config, and the panel's errors in its own words (real bpy, the real generator in a child)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

from blender_instseg.core.genconfig import GeneratorConfig, load_config  # noqa: E402

# one setting per config section, each away from its default and valid in a masks-only run
CHANGES: dict[str, dict[str, Any]] = {
    "objects": {"scatter_radius": 1.5, "min_visible_pixels": 6},
    "distractors": {"scale": [0.25, 0.5]},
    "materials": {"metallic_probability": 0.5, "transparency_labels": "opaque"},
    "lights": {"energy": [100.0, 500.0]},
    "camera": {"jitter": 0.125, "elevation": [30.0, 60.0]},
    "world": {"gradient_probability": 0.25},
    "backplate": {"horizon_margin": 10.0},
    "textures": {"object_probability": 0.125},
    "physics": {"frames": 10},
    "render": {"max_bounces": 3, "device": "cpu"},
    "output": {"export_semantic": True, "mask_format": "polygon", "preview": False},
    "lens": {"fstop": [0.125, 0.25]},
    "sensor": {"jpeg_quality": [70, 90]},
    "sequence": {"object_spin": [0.0, 45.0]},
}


@pytest.fixture()
def panel(addon, tmp_path: Path):
    from blender_instseg.blender import config_props

    s = bpy.context.scene.instseg
    config_props.reset(s.generator)
    s.config_file = ""
    s.num_images, s.seed, s.resolution, s.resolution_height = 1, 5, 24, 16
    s.min_objects, s.max_objects, s.masks_only, s.val_fraction = 1, 2, True, 0.0
    s.object_source, s.distractors_dir = "BUILTIN", ""
    s.dataset_dir = str(tmp_path / "ds")
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    yield s
    config_props.reset(s.generator)
    s.config_file, s.resolution_height, s.masks_only, s.val_fraction = "", 0, False, 0.1
    state = bpy.context.window_manager.instseg_job
    state.last_error = state.summary = state.kind = ""


def _set(s: Any, changes: dict[str, dict[str, Any]]) -> None:
    for section, values in changes.items():
        for name, value in values.items():
            setattr(getattr(s.generator, section), name, tuple(value) if isinstance(value, list) else value)


def test_every_config_field_is_a_widget_or_named_config_file_only(addon) -> None:
    from blender_instseg.blender import config_props

    stored = GeneratorConfig().to_dict()
    for section in config_props.SECTIONS:
        shown, only = set(config_props.fields(section)), set(config_props.config_only(section))
        owned = {key.split(".")[1] for key in config_props.PANEL_OWNED if key.startswith(f"{section}.")}
        assert shown | only | owned == set(stored[section]) and not (shown & only), section
        for name in shown:  # every widget has its line of label and help text
            assert f"{section}.{name}" in config_props.FIELDS, f"{section}.{name} has no FIELDS line"
    only = {section: config_props.config_only(section) for section in config_props.SECTIONS}
    assert {k: v for k, v in only.items() if v} == {"objects": ["shapes", "per_category"],
                                                    "distractors": ["shapes"], "lights": ["types"]}
    s = bpy.context.scene.instseg.generator
    assert s.world.bl_rna.properties["hdri_dir"].subtype == "DIR_PATH"
    assert s.output.bl_rna.properties["mask_format"].type == "ENUM"
    assert s.camera.bl_rna.properties["elevation"].array_length == 2
    assert s.sensor.bl_rna.properties["jpeg_quality"].type == "INT"


def test_a_setting_in_each_section_reaches_the_generators_config_json(panel, tmp_path: Path) -> None:
    from blender_instseg.blender.ops.dataset import config_overrides, config_path, generate_args

    s = panel
    _set(s, CHANGES)
    s.generator.materials.transparency_labels = "footprint"  # opaque labels need the materials masks-only skips
    expected = json.loads(json.dumps(CHANGES))
    expected["materials"]["transparency_labels"] = "footprint"
    expected["materials"] = {"metallic_probability": 0.5}  # footprint is the default: not written
    assert config_overrides(bpy.context) == expected  # only what differs from the defaults
    args = generate_args(bpy.context)
    assert args[args.index("--config") + 1] == str(config_path())
    assert args[args.index("--resolution") + 1] == "24x16"
    assert bpy.ops.instseg.generate_dataset() == {"FINISHED"}
    state = bpy.context.window_manager.instseg_job
    assert state.last_error == ""
    assert json.loads(config_path().read_text()) == expected
    gen = json.loads((tmp_path / "ds" / "config.json").read_text())["generator"]
    for section, values in expected.items():
        for name, value in values.items():
            assert gen[section][name] == value, f"{section}.{name}"
    assert gen["render"]["resolution"] == [24, 16] and gen["render"]["masks_only"] is True
    assert state.summary == f"dataset: 1 images in {tmp_path / 'ds'}"
    # extending the dataset: the summary counts the whole dataset, not just this run's images
    s.num_images = 2
    assert bpy.ops.instseg.generate_dataset() == {"FINISHED"}
    assert state.summary == f"dataset: 2 images in {tmp_path / 'ds'} (1 rendered now)"
    config_path().unlink()


def test_load_save_round_trip_in_toml_and_json_and_a_datasets_config_loads_back(panel, tmp_path: Path) -> None:
    from blender_instseg.blender.ops.dataset import panel_config

    s = panel
    source = tmp_path / "mine.toml"
    source.write_text('categories = ["cube", "sphere"]\n[objects]\nshapes = {cube = "cube", sphere = "sphere"}\n'
                      'min_count = 2\nmax_count = 4\nplacement = "upright"\n'
                      'per_category = {cube = {count = [1, 2], placement = "free"}}\n'
                      '[camera]\ndistance = [4.0, 5.0]\n[render]\nresolution = [40, 30]\nsamples = 3\n'
                      '[lights]\ntypes = ["SUN"]\n[output]\nexport_yolo = true\nval_fraction = 0.25\n')
    assert bpy.ops.instseg.load_config(filepath=str(source)) == {"FINISHED"}
    assert tuple(s.generator.camera.distance) == pytest.approx((4.0, 5.0))
    assert (s.min_objects, s.max_objects, s.placement, s.samples) == (2, 4, "upright", 3)
    assert (s.resolution, s.resolution_height, s.generator.output.export_yolo) == (40, 30, True)
    assert s.val_fraction == pytest.approx(0.25) and s.config_file == str(source)
    cfg = panel_config(bpy.context)
    # what only a config file sets comes from the Base Config
    assert cfg.categories == ["cube", "sphere"] and cfg.lights.types == ["SUN"]
    assert cfg.objects.per_category == {"cube": {"count": [1, 2], "placement": "free"}}
    for name in ("saved.toml", "saved.json"):
        assert bpy.ops.instseg.save_config(filepath=str(tmp_path / name)) == {"FINISHED"}
        assert load_config(tmp_path / name) == cfg
    tomllib.loads((tmp_path / "saved.toml").read_text())  # a real TOML file
    assert json.loads((tmp_path / "saved.json").read_text())["camera"]["distance"] == [4.0, 5.0]
    # a dataset's config.json: its generator section
    dataset_conf = tmp_path / "config.json"
    dataset_conf.write_text(json.dumps({"generator": {"camera": {"jitter": 0.5}, "physics": {"enabled": True}},
                                        "seed": 3, "num_images": 10}))
    assert bpy.ops.instseg.load_config(filepath=str(dataset_conf)) == {"FINISHED"}
    assert s.generator.camera.jitter == pytest.approx(0.5) and s.generator.physics.enabled
    assert tuple(s.generator.camera.distance) == pytest.approx((6.0, 9.0))  # not in the file: the default


@pytest.mark.parametrize("text, message", [
    ("[camera\n", "config is not valid TOML"),
    ("[camera]\nzoom = 2\n", "unknown key config.camera.zoom"),
    ("[lights]\nmin_count = 3\nmax_count = 1\n", "lights: need 0 <= min_count <= max_count"),
])
def test_a_bad_config_file_is_one_line_in_the_panel_and_changes_nothing(panel, tmp_path: Path, text: str,
                                                                        message: str) -> None:
    s = panel
    s.generator.camera.jitter = 0.75
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(RuntimeError):
        bpy.ops.instseg.load_config(filepath=str(bad))
    state = bpy.context.window_manager.instseg_job
    assert state.last_error.startswith("Load Config: ") and message in state.last_error
    assert "\n" not in state.last_error and state.kind == "generate"
    assert s.generator.camera.jitter == pytest.approx(0.75) and s.config_file == ""


def test_panel_errors_name_the_panels_settings(panel) -> None:
    from blender_instseg.blender import wording
    from blender_instseg.blender.ops.dataset import generate_args

    said = wording.ui_message("generate", "/x holds a dataset made with other settings "
                                          "(generator.camera.distance: [6, 9] vs [5, 9]); use a new --out or the same settings")
    assert "--out" not in said and "use a new Output Folder" in said and "Camera > Distance" in said
    assert wording.ui_message("train", "error: --out /r holds a run; use a new --out") == \
        "error: Run Folder /r holds a run; use a new Run Folder"
    assert "Validation Fraction" in wording.ui_message("generate", "output.val_fraction must be in [0, 1), got 2")
    assert wording.ui_message("generate", "wrote annotations.json") == "wrote annotations.json"
    s = panel
    s.generator.camera.elevation = (-100.0, 50.0)
    with pytest.raises(ValueError, match="Camera > Elevation must be within") as info:
        generate_args(bpy.context)
    assert "camera." not in str(info.value)
    with pytest.raises(RuntimeError):
        bpy.ops.instseg.generate_dataset()
    assert "Camera > Elevation" in bpy.context.window_manager.instseg_job.last_error
    assert not (Path(s.dataset_dir) / "config.json").exists()  # refused before anything is written
