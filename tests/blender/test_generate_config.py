"""GeneratorConfig (bpy-free): defaults validate, JSON/TOML load, strict keys, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blender_instseg.core.genconfig import GeneratorConfig, load_config


def test_defaults_validate_and_round_trip(tmp_path: Path) -> None:
    cfg = GeneratorConfig().validate()
    assert cfg.coco_categories()[0] == {"id": 1, "name": cfg.categories[0], "supercategory": "object"}
    # every shape's category is a declared category; ids follow the categories list
    for shape, cat in cfg.objects.shapes.items():
        assert cfg.category_id(shape) == cfg.categories.index(cat) + 1
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(cfg.to_dict()))
    assert load_config(p) == cfg


def test_toml_partial_override(tmp_path: Path) -> None:
    p = tmp_path / "cfg.toml"
    p.write_text('categories = ["box", "ball"]\n[objects]\nmin_count = 2\nmax_count = 3\n'
                 'shapes = { cube = "box", sphere = "ball" }\n[render]\nresolution = [96, 64]\n')
    cfg = load_config(p)
    assert cfg.objects.min_count == 2 and cfg.objects.max_count == 3
    assert cfg.render.resolution == [96, 64]
    assert cfg.category_id("sphere") == 2
    assert cfg.camera.distance == GeneratorConfig().camera.distance  # untouched sections keep defaults


def test_dataset_config_json_loads(tmp_path: Path) -> None:
    """A dataset's own config.json (generator section + extras) is a valid --config."""
    cfg = GeneratorConfig()
    cfg.render.samples = 3
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"generator": cfg.to_dict(), "categories": cfg.coco_categories(), "seed": 4}))
    assert load_config(p).render.samples == 3


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"objects": {"min_count": 5, "max_count": 2}}', "min_count (5) > objects.max_count (2)"),
        ('{"objects": {"min_count": -1}}', "objects.min_count must be >= 0"),
        ('{"objects": {"mni_count": 1}}', "unknown key config.objects.mni_count"),
        ('{"objects": {"shapes": {"pyramid": "cube"}}}', "unknown shape 'pyramid'"),
        ('{"objects": {"shapes": {"cube": "box"}}}', "maps to category 'box'"),
        ('{"render": {"samples": 0}}', "render.samples must be >= 1"),
        ('{"render": {"samples": "many"}}', "render.samples must be an integer"),
        ('{"camera": {"distance": [5, 2]}}', "camera.distance: low (5) > high (2)"),
        ('{"output": {"mask_format": "png"}}', "output.mask_format must be rle or polygon"),
        ('{"objects": ', "not valid JSON"),
    ],
)
def test_bad_configs_fail_with_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ValueError) as info:
        load_config(p)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg


def test_missing_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    p = tmp_path / "bad.toml"
    p.write_text("[objects\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(p)
