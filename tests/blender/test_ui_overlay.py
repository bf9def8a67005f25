"""ui.overlay drawing (numpy + OpenCV) and its copy into bpy.data.images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.bpy  # the overlay module lives in the Blender layer (package imports bpy)

from blender_instseg.blender.ui import overlay  # noqa: E402


def _scene() -> tuple[np.ndarray, np.ndarray]:
    rgb = np.full((96, 128, 3), 40, np.uint8)
    masks = np.zeros((3, 96, 128), bool)
    masks[0, 10:40, 10:50] = True
    masks[1, 12:42, 14:54] = True  # overlaps the first: their labels compete for the same spot
    masks[2, 60:90, 80:120] = True
    return rgb, masks


def test_fill_outline_and_transparent_background() -> None:
    rgb, masks = _scene()
    out = overlay.draw_overlay(rgb, masks, ["a 0.10", "b 0.50", "c 0.90"])
    assert out.composite.shape == (96, 128, 3) and out.layer.shape == (96, 128, 4)
    cols = overlay.palette(3)
    # deep inside mask 2 the composite is the 50 % blend of the background and its colour
    expected = (rgb[75, 100] * 0.5 + cols[2] * 0.5 + 0.5).astype(np.uint8)
    assert np.abs(out.composite[75, 100].astype(int) - expected).max() <= 1
    # where masks 0 and 1 overlap, the later (higher score) one is on top
    assert np.array_equal(out.layer[30, 30, :3], cols[1])
    # far from every mask and label the picture is untouched and the layer transparent
    assert np.array_equal(out.composite[93, 2], rgb[93, 2]) and out.layer[93, 2, 3] == 0
    assert (out.layer[masks.any(0), 3] > 0).all()
    # outlines: the mask border is more opaque than the fill (anti-aliased, so not exactly 255)
    assert np.array_equal(out.layer[60, 100, :3], cols[2]) and out.layer[60, 100, 3] > out.layer[75, 100, 3]


def test_labels_do_not_overlap_when_there_is_room() -> None:
    rgb, masks = _scene()
    placed: list[tuple[int, int, int, int]] = []
    for i in (2, 1, 0):
        ys, xs = np.nonzero(masks[i])
        placed.append(overlay._place_label(40, 12, xs, ys, 128, 96, placed))
    for a in range(3):
        for b in range(a + 1, 3):
            assert overlay._overlap(placed[a], placed[b]) == 0
    assert all(0 <= x0 and 0 <= y0 and x1 <= 128 and y1 <= 96 for x0, y0, x1, y1 in placed)


def test_bad_input_and_png_round_trip() -> None:
    rgb, masks = _scene()
    with pytest.raises(ValueError, match="labels"):
        overlay.draw_overlay(rgb, masks, ["only one"])
    empty = overlay.draw_overlay(rgb, np.zeros((0, 96, 128), bool), [])
    assert np.array_equal(empty.composite, rgb)
    out = overlay.draw_overlay(rgb, masks, ["a", "b", "c"])
    back = cv2.imdecode(np.frombuffer(overlay.encode_png(out.layer), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(cv2.cvtColor(back, cv2.COLOR_BGRA2RGBA), out.layer)


def test_blender_image_gets_the_pixels_bottom_up() -> None:
    import bpy
    rgb, masks = _scene()
    out = overlay.draw_overlay(rgb, masks, ["a", "b", "c"])
    image = overlay.to_blender_image("test overlay", out.layer)
    try:
        assert tuple(image.size) == (128, 96)
        px = np.empty(128 * 96 * 4, np.float32)
        image.pixels.foreach_get(px)
        px = np.flipud(px.reshape(96, 128, 4))
        assert np.abs(px * 255 - out.layer).max() < 0.51
        again = overlay.to_blender_image("test overlay", out.composite[:50])  # new size: recreated
        assert tuple(again.size) == (128, 50)
    finally:
        for name in ("test overlay",):
            if name in bpy.data.images:
                bpy.data.images.remove(bpy.data.images[name])


def test_the_overlay_survives_save_and_reopen(tmp_path) -> None:
    """Saved and reopened, the overlay images come back with their pixels (packed, kept by a fake
    user), not as the blank black image that turned the camera view black (issue 23 item 2)."""
    import bpy

    rgb, masks = _scene()
    out = overlay.draw_overlay(rgb, masks, ["a", "b", "c"])
    overlay.to_blender_image(overlay.LAYER_NAME, out.layer)
    overlay.to_blender_image(overlay.COMPOSITE_NAME, out.composite)
    path = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    try:
        for name, expected in ((overlay.LAYER_NAME, out.layer), (overlay.COMPOSITE_NAME, out.composite)):
            image = bpy.data.images[name]
            w, h = image.size
            px = np.empty(w * h * 4, np.float32)
            image.pixels.foreach_get(px)
            px = np.flipud(px.reshape(h, w, 4)) * 255
            channels = expected.shape[2]
            assert np.abs(px[..., :channels] - expected).max() < 0.51, name
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)
