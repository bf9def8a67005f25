"""core/sensor.py (no bpy): developing the linear render into the written 8-bit image, the sensor
effects' statistics, JPEG files through the dataset's consumers, and the [lens]/[sensor]/transparency
config checks and resume defaults."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from blender_instseg.core import sensor
from blender_instseg.core.formats import yolo
from blender_instseg.core.genconfig import GeneratorConfig, SensorConfig
from blender_instseg.core.validation.validate import validate_dataset
from blender_instseg.generator import resume
from tests.shapes import make_shapes_dataset


def _scene(h: int = 48, w: int = 64) -> np.ndarray:
    """A linear render-like image: a gradient plus a flat grey square (for noise statistics)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lin = np.stack([xx / w, yy / h, 0.5 * (xx + yy) / (w + h)], axis=-1) * 0.8
    lin[8:40, 8:40] = 0.18
    return lin.astype(np.float32)


def _old_rgb8(lin: np.ndarray) -> np.ndarray:
    """The sRGB encoding the generator wrote before the sensor module existed (cycles.rgb8)."""
    lin = lin[..., :3].astype(np.float32)
    p97 = float(np.percentile(lin.max(axis=2), 97))
    if p97 > 0.95:
        lin = lin * np.float32(0.95 / p97)
    lin = np.clip(lin, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return np.rint(srgb * 255.0).astype(np.uint8)


def test_without_effects_develop_is_the_old_encoding_bit_for_bit() -> None:
    for lin in (_scene(), _scene() * 3.0):  # also a blown-out one (auto exposure scales it down)
        rgba = np.concatenate([lin, np.ones(lin.shape[:2] + (1,), np.float32)], axis=-1)
        assert np.array_equal(sensor.develop(rgba), _old_rgb8(rgba))


def test_spec_sampling_is_off_by_default_and_always_draws_the_same_amount() -> None:
    on = SensorConfig(noise_probability=1, exposure_probability=1, white_balance_probability=1, jpeg_probability=1,
                      jpeg_quality=[70, 72])
    for seed in range(20):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert sensor.SensorSpec.sample(a, SensorConfig()) == sensor.NO_EFFECTS
        spec = sensor.SensorSpec.sample(b, on)
        assert a.uniform() == b.uniform()  # the same number of draws, effects on or off
        assert 0.005 <= spec.noise <= 0.03 and -1 <= spec.exposure <= 1 and -0.3 <= spec.white_balance <= 0.3
        assert spec.jpeg_quality in (70, 71, 72) and spec.suffix == ".jpg"
        assert sensor.SensorSpec.sample(np.random.default_rng(seed), on) == spec  # deterministic
    assert sensor.NO_EFFECTS.suffix == ".png" and sensor.NO_EFFECTS.to_record() == {}


def test_each_effect_changes_the_statistics_it_should() -> None:
    lin = _scene()
    base = sensor.develop(lin).astype(np.float64)
    flat = (slice(10, 38), slice(10, 38))
    assert base[flat].std() == 0.0

    brighter = sensor.develop(lin, sensor.SensorSpec(exposure=1.0)).astype(np.float64)
    darker = sensor.develop(lin, sensor.SensorSpec(exposure=-1.0)).astype(np.float64)
    assert darker.mean() < base.mean() - 10 < brighter.mean() - 20

    noisy = sensor.develop(lin, sensor.SensorSpec(noise=0.02), np.random.default_rng(1)).astype(np.float64)
    assert noisy[flat].std() > 2.0  # about 0.02 * 0.45 linear at grey 0.18, ~3.5 levels after the sRGB curve
    assert abs(noisy[flat].mean() - base[flat].mean()) < 1.0  # zero-mean noise
    again = sensor.develop(lin, sensor.SensorSpec(noise=0.02), np.random.default_rng(1))
    assert np.array_equal(again, noisy.astype(np.uint8))  # the same generator gives the same noise
    with pytest.raises(ValueError, match="random generator"):
        sensor.develop(lin, sensor.SensorSpec(noise=0.02))

    warm = sensor.develop(lin, sensor.SensorSpec(white_balance=0.3)).astype(np.float64)
    cool = sensor.develop(lin, sensor.SensorSpec(white_balance=-0.3)).astype(np.float64)
    g = base[flat][..., 1].mean()
    assert warm[flat][..., 0].mean() > g + 5 > warm[flat][..., 2].mean() + 10
    assert cool[flat][..., 2].mean() > g + 5 > cool[flat][..., 0].mean() + 10
    assert np.array_equal(warm[..., 1], base[..., 1])  # green keeps its gain


def test_png_is_lossless_and_jpeg_quality_trades_size_for_error() -> None:
    rgb = sensor.develop(_scene(), sensor.SensorSpec(noise=0.01), np.random.default_rng(0))
    png = cv2.imdecode(np.frombuffer(sensor.encode_image(rgb, ".png"), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(png, rgb)
    sizes, errors = [], []
    for q in (20, 95):
        data = sensor.encode_image(rgb, ".jpg", q)
        assert data[:2] == b"\xff\xd8" and data == sensor.encode_image(rgb, ".jpg", q)  # JPEG, deterministic
        back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        sizes.append(len(data))
        errors.append(np.abs(back.astype(int) - rgb.astype(int)).mean())
    assert sizes[0] < sizes[1] and errors[0] > errors[1]
    with pytest.raises(ValueError, match=".png or .jpg"):
        sensor.encode_image(rgb, ".bmp")


def test_jpeg_images_are_read_by_validate_and_the_yolo_export(tmp_path: Path) -> None:
    """A dataset whose file_name points at .jpg files: validate checks their size and export-yolo links them."""
    ann = make_shapes_dataset(tmp_path / "ds", n_images=3, size=48)
    coco = json.loads(ann.read_text())
    for im in coco["images"][:2]:  # a mixed dataset: two JPEGs, one PNG
        png = tmp_path / "ds" / im["file_name"]
        rgb = cv2.imread(str(png), cv2.IMREAD_COLOR)[..., ::-1]
        jpg = png.with_suffix(".jpg")
        jpg.write_bytes(sensor.encode_image(rgb, ".jpg", 80))
        png.unlink()
        im["file_name"] = "images/" + jpg.name
    ann.write_text(json.dumps(coco))
    report = validate_dataset(tmp_path / "ds")
    assert report.ok, report.errors[:3]
    yolo.export_yolo(tmp_path / "ds", out_root=tmp_path / "yolo")
    linked = sorted(p.name for p in (tmp_path / "yolo" / "images").rglob("*") if p.is_file())
    assert linked == ["000000.jpg", "000001.jpg", "000002.png"]
    # a JPEG of the wrong size is still caught
    im0 = tmp_path / "ds" / coco["images"][0]["file_name"]
    im0.write_bytes(sensor.encode_image(np.zeros((40, 48, 3), np.uint8), ".jpg", 80))
    assert not validate_dataset(tmp_path / "ds").ok


@pytest.mark.parametrize("section, values, fragment", [
    ("lens", {"fstop": [0.0, 2.0]}, "lens.fstop must be > 0"),
    ("lens", {"fstop": [4.0, 2.0]}, "lens.fstop: low (4.0) > high (2.0)"),
    ("lens", {"shutter": [0.0, 1.0]}, "lens.shutter must be > 0"),
    ("lens", {"dof_probability": 1.5}, "lens.dof_probability must be in [0, 1]"),
    ("lens", {"motion_blur_probability": -0.1}, "lens.motion_blur_probability must be in [0, 1]"),
    ("lens", {"object_motion": [-1.0, 0.2]}, "lens.object_motion must be >= 0"),
    ("sensor", {"jpeg_quality": [0, 90]}, "sensor.jpeg_quality must be integers within 1..100"),
    ("sensor", {"jpeg_quality": [50, 101]}, "sensor.jpeg_quality must be integers within 1..100"),
    ("sensor", {"jpeg_quality": [50.5, 90]}, "sensor.jpeg_quality must be integers within 1..100"),
    ("sensor", {"jpeg_probability": 2}, "sensor.jpeg_probability must be in [0, 1]"),
    ("sensor", {"noise": [-0.1, 0.1]}, "sensor.noise must be >= 0"),
    ("sensor", {"exposure": [1.0, -1.0]}, "sensor.exposure: low (1.0) > high (-1.0)"),
    ("materials", {"glass_probability": 1.2}, "materials.glass_probability must be in [0, 1]"),
    ("materials", {"transparency_labels": "alpha"}, "materials.transparency_labels must be one of footprint, opaque"),
])
def test_impossible_look_settings_are_one_line_errors(section: str, values: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        GeneratorConfig.from_dict({section: values}).validate()
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_masks_only_cannot_label_alpha_holes() -> None:
    data = {"render": {"masks_only": True}, "materials": {"alpha_cut_probability": 0.5, "transparency_labels": "opaque"}}
    with pytest.raises(ValueError, match="needs the materials"):
        GeneratorConfig.from_dict(data).validate()
    data["materials"]["transparency_labels"] = "footprint"
    GeneratorConfig.from_dict(data).validate()
    # negative exposure and white balance are valid ranges (darker, cooler)
    GeneratorConfig.from_dict({"sensor": {"exposure": [-2.0, -1.0], "white_balance": [-0.5, -0.1]}}).validate()


def test_datasets_from_before_the_looks_resume_with_the_defaults() -> None:
    """An old config.json has no [lens]/[sensor] and no transparency keys: it reads as today's defaults (off)."""
    new = {"generator": GeneratorConfig().to_dict(), "seed": 1, "variants_of": None}
    old = json.loads(json.dumps(new))
    del old["generator"]["lens"], old["generator"]["sensor"]
    for key in ("glass_probability", "alpha_cut_probability", "transparency_labels"):
        del old["generator"]["materials"][key]
    assert resume._identity(old) == resume._identity(new)
    on = json.loads(json.dumps(new))
    on["generator"]["sensor"]["jpeg_probability"] = 0.5
    assert resume._identity(old) != resume._identity(on)
