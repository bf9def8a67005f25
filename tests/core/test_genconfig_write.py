"""core.genconfig_write: a generator config written as TOML (the subset it needs) or JSON reads back equal."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from blender_instseg.core.genconfig import GeneratorConfig, load_config
from blender_instseg.core.genconfig_write import dump_toml, write_config


def _unusual() -> GeneratorConfig:
    cfg = GeneratorConfig()
    cfg.objects.shapes = {"file:chairs/oak chair.glb": "chair", "cube": "cube"}
    cfg.categories = ["chair", "cube"]
    cfg.objects.assets_dir = "/assets"
    cfg.objects.per_category = {"chair": {"placement": "upright", "count": [1, 3], "physics": False}}
    cfg.world.hdri_dir = 'C:\\maps\\"quoted" \u00e9t\u00e9'
    cfg.sensor.noise = [1e-05, 0.5]
    cfg.output.exports = ["yolo"]
    return cfg


def test_toml_round_trips_every_kind_of_value_a_config_holds(tmp_path: Path) -> None:
    cfg = _unusual()
    assert tomllib.loads(dump_toml(cfg.to_dict())) == cfg.to_dict()
    for name in ("c.toml", "c.json"):
        write_config(cfg, tmp_path / name)
        assert load_config(tmp_path / name) == cfg
    assert json.loads((tmp_path / "c.json").read_text())["output"]["export_yolo"] is True


def test_a_datasets_config_json_with_per_category_settings_loads_back(tmp_path: Path) -> None:
    cfg = _unusual()
    (tmp_path / "config.json").write_text(json.dumps({"generator": cfg.to_dict(), "seed": 1, "num_images": 4}))
    assert load_config(tmp_path / "config.json") == cfg
    (tmp_path / "bad.json").write_text(json.dumps({"objects": {"per_category": {"chair": "upright"}}}))
    with pytest.raises(ValueError, match="per_category must be a table of tables"):
        load_config(tmp_path / "bad.json")


def test_an_invalid_config_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    cfg = GeneratorConfig()
    cfg.lights.min_count = 5
    with pytest.raises(ValueError, match="lights: need 0 <= min_count <= max_count"):
        write_config(cfg, tmp_path / "c.toml")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="cannot write a set"):
        dump_toml({"a": {"b": {1, 2}}})
