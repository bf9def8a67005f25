"""The look folders without bpy: which files are HDRIs, photos and texture sets, their checks, and the
backplate maths (horizon test, photo crop, composite). Media are made here with numpy/OpenCV."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
import cv2  # noqa: E402

from blender_instseg.core import backplate  # noqa: E402
from blender_instseg.core.genconfig import GeneratorConfig  # noqa: E402
from blender_instseg.generator import media  # noqa: E402


def _png(path: Path, value: int = 128, shape: tuple[int, ...] = (8, 8, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full(shape, value, np.uint8))
    return path


@pytest.mark.parametrize(("stem", "expected"), [
    ("rock_wall_diff_2k", ("colour", "rock_wall_2k")),
    ("rock_wall_rough_2k", ("roughness", "rock_wall_2k")),
    ("rock_wall_nor_gl_2k", ("normal", "rock_wall_2k")),
    ("Bricks059_1K-JPG_Color", ("colour", "Bricks059_1K-JPG")),
    ("Bricks059_1K-JPG_Roughness", ("roughness", "Bricks059_1K-JPG")),
    ("Bricks059_1K-JPG_NormalGL", ("normal", "Bricks059_1K-JPG")),
    ("Bricks059_1K-JPG_NormalDX", None),  # DirectX normals: not used
    ("rock_wall_disp_2k", None),
    ("Bricks059", None),  # ambientCG's preview image
    ("discolored", None),  # a token must stand between separators
])
def test_map_roles_follow_poly_haven_and_ambientcg_naming(stem: str, expected: tuple[str, str] | None) -> None:
    assert media.map_role(stem) == expected


def test_texture_sets_group_maps_by_folder_and_name(tmp_path: Path) -> None:
    for name in ("wood/wood_diff_1k.png", "wood/wood_rough_1k.png", "wood/wood_nor_gl_1k.png", "wood/wood_arm_1k.png",
                 "Bricks/Bricks001_1K-JPG_Color.jpg", "Bricks/Bricks001_1K-JPG_Roughness.jpg", "Bricks/Bricks001.png",
                 ".hidden/x_diff.png"):
        _png(tmp_path / name)
    sets = media.texture_sets(str(tmp_path))
    assert sets == (
        media.TextureSet("Bricks/Bricks001_1K-JPG", "Bricks/Bricks001_1K-JPG_Color.jpg",
                         "Bricks/Bricks001_1K-JPG_Roughness.jpg", ""),
        media.TextureSet("wood/wood_1k", "wood/wood_diff_1k.png", "wood/wood_rough_1k.png", "wood/wood_nor_gl_1k.png"),
    )


def test_a_set_without_a_colour_map_is_refused(tmp_path: Path) -> None:
    _png(tmp_path / "a_diff.png")
    _png(tmp_path / "b_rough.png")
    with pytest.raises(ValueError, match=r"texture set 'b' .* has no colour map"):
        media.texture_sets(str(tmp_path))


def test_image_lists_are_sorted_and_skip_other_files(tmp_path: Path) -> None:
    _png(tmp_path / "b.png")
    _png(tmp_path / "sub" / "a.JPG")
    (tmp_path / "notes.txt").write_text("x")
    _png(tmp_path / ".cache" / "c.png")
    assert media.list_images(tmp_path, media.PHOTO_SUFFIXES) == ["b.png", "sub/a.JPG"]
    assert media.photo_files(str(tmp_path)) == ("b.png", "sub/a.JPG")


def _config(tmp_path: Path, **dirs: str) -> GeneratorConfig:
    cfg = GeneratorConfig()
    cfg.world.hdri_dir = dirs.get("hdri", "")
    cfg.backplate.photos_dir = dirs.get("photos", "")
    cfg.textures.textures_dir = dirs.get("textures", "")
    return cfg.validate()


def test_check_media_accepts_good_folders(tmp_path: Path) -> None:
    hdri = tmp_path / "hdri"
    hdri.mkdir()
    assert cv2.imwrite(str(hdri / "sky.exr"), np.ones((8, 16, 3), np.float32))
    assert cv2.imwrite(str(hdri / "sky2.hdr"), np.ones((8, 16, 3), np.float32))
    _png(tmp_path / "photos" / "p.jpg")
    _png(tmp_path / "tex" / "m_diff.png")
    media.check_media(_config(tmp_path, hdri=str(hdri), photos=str(tmp_path / "photos"), textures=str(tmp_path / "tex")))
    media.check_media(_config(tmp_path))  # no folders: nothing to check


def test_check_media_refuses_bad_folders_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="holds no HDRI image"):
        media.check_media(_config(tmp_path, hdri=str(empty)))
    with pytest.raises(ValueError, match="folder not found"):
        media.check_media(_config(tmp_path, photos=str(tmp_path / "missing")))
    photos = tmp_path / "photos"
    good = _png(photos / "a.png")
    (photos / "b.jpg").write_bytes(good.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match=r"cannot read image .*b\.jpg"):
        media.check_media(_config(tmp_path, photos=str(photos)))
    with pytest.raises(ValueError, match="holds no texture set"):
        media.check_media(_config(tmp_path, textures=str(empty)))


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("hdri_probability", 1.5, "world.hdri_probability must be in [0, 1]"),
    ("hdri_strength", [2.0, 1.0], "world.hdri_strength: low (2.0) > high (1.0)"),
    ("hdri_rotation", [0.0, 400.0], "world.hdri_rotation must be within [0, 360]"),
])
def test_impossible_world_ranges(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        GeneratorConfig.from_dict({"world": {key: value}}).validate()
    assert fragment in str(err.value)


def test_impossible_backplate_and_texture_settings() -> None:
    for data, fragment in [
        ({"backplate": {"probability": -0.1}}, "backplate.probability must be in [0, 1]"),
        ({"backplate": {"horizon_margin": 90}}, "backplate.horizon_margin must be in [0, 90)"),
        ({"backplate": {"photos_dir": "/x"}, "world": {"ground": False}}, "needs world.ground = true"),
        ({"textures": {"tile_size": [0.0, 1.0]}}, "textures.tile_size must be > 0"),
        ({"textures": {"object_probability": 2}}, "textures.object_probability must be in [0, 1]"),
        ({"textures": {"asset_hue_jitter": 0.7}}, "textures.asset_hue_jitter must be in [0, 0.5]"),
    ]:
        with pytest.raises(ValueError) as err:
            GeneratorConfig.from_dict(data).validate()
        assert fragment in str(err.value)


def test_horizon_test_uses_the_vertical_field_of_view() -> None:
    # 36 mm sensor on a square frame, 36 mm lens: half the vertical field of view is atan(0.5) = 26.57 degrees
    assert backplate.sees_no_horizon(32.0, 36.0, 64, 64, 5.0)
    assert not backplate.sees_no_horizon(31.0, 36.0, 64, 64, 5.0)
    # a landscape frame is shorter vertically: less elevation needed
    assert backplate.sees_no_horizon(22.0, 36.0, 128, 64, 5.0)


def test_photo_crop_and_composite(tmp_path: Path) -> None:
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40] = (0, 0, 255)  # left half red (BGR)
    img[:, 40:] = (255, 0, 0)  # right half blue
    path = tmp_path / "p.png"
    assert cv2.imwrite(str(path), img)
    photo = backplate.photo_linear(path, 20, 20, 1.0, 0.0, 0.5, False)  # the left square of the photo
    assert photo.shape == (20, 20, 3) and photo.dtype == np.float32
    assert np.allclose(photo[:, :, 0], 1.0) and np.allclose(photo[:, :, 2], 0.0)
    flipped = backplate.photo_linear(path, 20, 20, 1.0, 0.0, 0.5, True)
    assert np.allclose(flipped, photo[:, ::-1])
    right = backplate.photo_linear(path, 20, 20, 1.0, 1.0, 0.5, False)
    assert np.allclose(right[:, :, 2], 1.0)
    # composite: an opaque object pixel keeps its colour, a clear pixel shows the photo times the shadow
    combined = np.zeros((20, 20, 4), np.float32)
    combined[0, 0] = (0.2, 0.3, 0.4, 1.0)
    shadow = np.ones((20, 20, 3), np.float32)
    shadow[5, 5] = 0.25
    shadow[6, 6] = 1.6  # bounced light is left out: never brighter than the photo
    out = backplate.composite(combined, shadow, photo)
    assert np.allclose(out[0, 0], (0.2, 0.3, 0.4, 1.0))
    assert np.allclose(out[1, 1, :3], photo[1, 1]) and np.allclose(out[5, 5, :3], 0.25 * photo[5, 5])
    assert np.allclose(out[6, 6, :3], photo[6, 6]) and np.all(out[..., 3] == 1.0)
    with pytest.raises(RuntimeError, match="cannot read photo .*nothing.png"):
        backplate.photo_linear(tmp_path / "nothing.png", 8, 8, 1.0, 0.5, 0.5, False)
