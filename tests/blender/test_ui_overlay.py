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


def test_labels_never_hide_small_objects_and_are_dropped_when_they_do_not_fit() -> None:
    h, w = 128, 128
    masks = np.zeros((4, h, w), bool)
    masks[0, 0:8, 0:8] = True  # a small object at the top edge: no room above it
    masks[1, 60:100, 20:100] = True  # a large one
    masks[2, 62:66, 40:44] = True  # a tiny one on the large one, 4 x 4 pixels
    masks[3, 62:66, 46:50] = True  # its twin beside it: two labels compete for one spot
    labels = ["small 0.50", "large 0.90", "tiny 0.70", "twin 0.60"]
    scale = overlay.label_scale(h, w)
    boxes = overlay.layout_labels(masks, labels, scale)
    drawn = [(i, b[0]) for i, b in enumerate(boxes) if b is not None]
    for i, (x0, y0, x1, y1) in drawn:
        own = masks[i, y0:y1, x0:x1].sum()
        assert own * 4 <= masks[i].sum(), labels[i]  # never over most of its own object
        assert not masks[0, y0:y1, x0:x1].any() and not masks[2, y0:y1, x0:x1].any()  # the small ones stay seen
    for a in range(len(drawn)):
        for b in range(a + 1, len(drawn)):
            assert overlay._overlap(drawn[a][1], drawn[b][1]) == 0
    assert boxes[1] is not None and boxes[0] is not None  # there is room for these two
    # text grows with the image: a label is about 1/50 of the short side tall
    assert overlay.label_scale(1024, 1024) > 2 * overlay.label_scale(256, 256)
    # the drawn overlay leaves the tiny object's own colour visible in every pixel
    out = overlay.draw_overlay(np.full((h, w, 3), 40, np.uint8), masks, labels)
    inner = out.layer[63:65, 41:43]
    assert (inner[..., 3] > 0).all() and np.array_equal(inner[0, 0, :3], overlay.palette(4)[2])
