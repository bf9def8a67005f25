"""Draw predictions as an image (colour fill, outlines, "class score" labels) and hand it to Blender.

The drawing is plain numpy + OpenCV on uint8 arrays (fast, testable without a window); the only
bpy part copies the pixels into a ``bpy.data.images`` datablock with ``foreach_set``. Two images
come out: an opaque composite over the rendered view (for the Image Editor and the PNG on disk)
and a transparent layer with only the instances, which can sit over the camera view as its
background image without doubling the scene.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np

COMPOSITE_NAME = "InstSeg Overlay"
LAYER_NAME = "InstSeg Overlay Layer"


def palette(n: int, seed: int = 0) -> np.ndarray:
    """``n`` well separated saturated colours (golden-ratio hue steps), uint8 RGB."""
    out = np.empty((n, 3), np.uint8)
    h = (0.13 + 0.618033988749895 * seed) % 1.0
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb(h, 0.85, 1.0)
        out[i] = (int(r * 255), int(g * 255), int(b * 255))
        h = (h + 0.618033988749895) % 1.0
    return out


@dataclass
class Overlay:
    composite: np.ndarray  # H x W x 3 uint8, top row first
    layer: np.ndarray  # H x W x 4 uint8 (alpha 0 outside instances), top row first


def draw_overlay(rgb: np.ndarray, masks: np.ndarray, labels: Sequence[str], *, alpha: float = 0.5,
                 colours: np.ndarray | None = None) -> Overlay:
    """Fill, outline and label each mask. Later masks are drawn over earlier ones (pass low scores first)."""
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    masks = np.asarray(masks, dtype=bool).reshape(-1, h, w)
    n = masks.shape[0]
    if len(labels) != n:
        raise ValueError(f"{n} masks but {len(labels)} labels")
    cols = palette(n) if colours is None else np.asarray(colours, np.uint8).reshape(n, 3)
    # top-most instance per pixel: the last mask covering it
    owner = np.full((h, w), -1, np.int32)
    if n:
        covered = masks.any(0)
        last = n - 1 - np.argmax(masks[::-1], axis=0)
        owner[covered] = last[covered]
    fg = owner >= 0
    colour_img = np.zeros((h, w, 3), np.uint8)
    colour_img[fg] = cols[owner[fg]]
    composite = rgb.copy()
    composite[fg] = (rgb[fg] * (1.0 - alpha) + colour_img[fg] * alpha + 0.5).astype(np.uint8)
    layer = np.zeros((h, w, 4), np.uint8)
    layer[..., :3] = colour_img
    layer[fg, 3] = int(round(255 * alpha))
    thick = max(1, round(min(h, w) / 256))
    font_scale = label_scale(h, w)
    for i in range(n):
        m = masks[i].astype(np.uint8)
        if not m.any():
            continue
        contours, _ = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        colour = tuple(int(c) for c in cols[i])
        cv2.drawContours(composite, contours, -1, colour, thick, lineType=cv2.LINE_AA)
        cv2.drawContours(layer, contours, -1, (*colour, 255), thick, lineType=cv2.LINE_AA)
    # Labels last so outlines never cross them; the top-most (best) instance chooses its spot first.
    for i, placed in enumerate(layout_labels(masks, labels, font_scale)):
        if placed is not None:
            box, base = placed
            _label(composite, labels[i], box, base, cols[i], font_scale)
            _label(layer, labels[i], box, base, cols[i], font_scale)
    return Overlay(composite, layer)


def label_scale(h: int, w: int) -> float:
    """OpenCV font scale for an image: text grows with the image (about 1/50 of its short side tall)."""
    return max(0.25, min(1.5, min(h, w) / 700.0))


def _box_sum(table: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """Pixels set inside ``box`` (x0, y0, x1, y1) from a summed-area table with a zero first row and column."""
    x0, y0, x1, y1 = box
    return int(table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0])


def _summed(mask: np.ndarray) -> np.ndarray:
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    table[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return table


def layout_labels(masks: np.ndarray, labels: Sequence[str],
                  font_scale: float) -> list[tuple[tuple[int, int, int, int], int] | None]:
    """Where each label goes, as (box, text baseline), or None where it does not fit.

    The best instance (the last) places first, at the spot near its mask that covers the fewest
    object pixels without touching an earlier label. A label that would cover an earlier label, or
    more than a quarter of its own object, is left out: at small sizes the picture shows the
    objects, and the panel's list still names every prediction.
    """
    n, h, w = masks.shape
    out: list[tuple[tuple[int, int, int, int], int] | None] = [None] * n
    objects = _summed(masks.any(0)) if n else None
    placed: list[tuple[int, int, int, int]] = []
    for i in reversed(range(n)):
        ys, xs = np.nonzero(masks[i])
        if ys.size == 0 or not labels[i]:
            continue
        (tw, th), base = cv2.getTextSize(labels[i], cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        bw, bh = tw + 2, th + base + 1
        if bw > w or bh > h:
            continue
        box = _place_label(bw, bh, xs, ys, w, h, placed, objects)
        own = int(masks[i][box[1]:box[3], box[0]:box[2]].sum())
        if any(_overlap(box, other) for other in placed) or own * 4 > ys.size:
            continue
        placed.append(box)
        out[i] = (box, base)
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def _place_label(bw: int, bh: int, xs: np.ndarray, ys: np.ndarray, w: int, h: int,
                 placed: list[tuple[int, int, int, int]],
                 objects: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """A label box (x0, y0, x1, y1) near the mask that overlaps earlier labels least, then (with
    ``objects``, a summed-area table of every mask) covers the fewest object pixels.

    Tries above the mask's top edge, inside its top, below its bottom edge and at its centre, in
    that order; the first spot with no overlap wins, else the least overlapping one.
    """
    x_left, x_right, y_top, y_bottom = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    cx, cy = int(xs.mean()), int(ys.mean())
    candidates = [(x_left, y_top - bh), (x_right - bw, y_top - bh), (x_left, y_bottom + 1),
                  (x_right - bw, y_bottom + 1), (x_left, y_top), (cx - bw // 2, cy - bh // 2)]
    best: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None
    for x0, y0 in candidates:
        x0 = max(0, min(x0, w - bw))
        y0 = max(0, min(y0, h - bh))
        box = (x0, y0, x0 + bw, y0 + bh)
        cost = (sum(_overlap(box, other) for other in placed), 0 if objects is None else _box_sum(objects, box))
        if cost == (0, 0):
            return box
        if best is None or cost < best[0]:
            best = (cost, box)
    assert best is not None
    return best[1]


def _label(img: np.ndarray, text: str, box: tuple[int, int, int, int], base: int, colour: np.ndarray,
           scale: float) -> None:
    x0, y0, x1, y1 = box
    bg = (0, 0, 0, 200) if img.shape[2] == 4 else (0, 0, 0)
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), bg, thickness=-1)
    fg = (*(int(c) for c in colour), 255) if img.shape[2] == 4 else tuple(int(c) for c in colour)
    cv2.putText(img, text, (x0 + 1, y1 - base - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, fg, 1, cv2.LINE_AA)


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of an RGB or RGBA uint8 image (OpenCV wants BGR order)."""
    if img.shape[2] == 4:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    else:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError("OpenCV could not encode the overlay PNG")
    return buf.tobytes()


def to_blender_image(name: str, img: np.ndarray) -> Any:
    """Create or refresh ``bpy.data.images[name]`` with the pixels of ``img`` (uint8, top row first).

    The pixels are packed into the .blend and the image has a fake user: a generated image is saved
    without its pixels otherwise, and reopened as a blank opaque black one, which as the camera's
    front background turns the camera view black; and an image with no user is not saved at all.
    """
    import bpy

    h, w = img.shape[:2]
    image = bpy.data.images.get(name)
    if image is not None and tuple(image.size) != (w, h):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.new(name, width=w, height=h, alpha=True)
    rgba = np.empty((h, w, 4), np.float32)
    rgba[..., :3] = img[..., :3]
    rgba[..., 3] = img[..., 3] if img.shape[2] == 4 else 255
    rgba = np.flipud(rgba) / 255.0  # Blender stores rows bottom-up
    image.pixels.foreach_set(np.ascontiguousarray(rgba, dtype=np.float32).ravel())  # type: ignore[attr-defined]
    image.update()
    image.pack()  # again on every refresh: the packed copy is what a save writes
    image.use_fake_user = True
    return image


def show_in_image_editors(context: Any, image: Any, set_up: Callable[[Any], None] | None = None) -> int:
    """Point every open Image Editor at ``image`` (then ``set_up(space)``, e.g. to play a sequence);
    returns how many there were."""
    shown = 0
    wm = getattr(context, "window_manager", None)
    for window in (wm.windows if wm is not None else []):
        if window.screen is None:
            continue
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                if set_up is not None:
                    set_up(area.spaces.active)
                area.tag_redraw()
                shown += 1
    return shown


def set_camera_background(camera_obj: Any, image: Any, alpha: float = 1.0) -> None:
    """Show ``image`` over the camera view (front), reusing our slot when it already exists."""
    cam = camera_obj.data
    slot = next((bg for bg in cam.background_images if bg.image is not None and bg.image.name == image.name), None)
    if slot is None:
        slot = cam.background_images.new()
    slot.image = image
    slot.alpha = alpha
    slot.display_depth = "FRONT"
    slot.show_background_image = True
    cam.show_background_images = True


def remove_camera_backgrounds(names: Sequence[str]) -> int:
    """Remove our overlay slots from every camera; returns how many were removed."""
    import bpy

    removed = 0
    for cam in bpy.data.cameras:
        for bg in list(cam.background_images):
            if bg.image is not None and bg.image.name in names:
                cam.background_images.remove(bg)
                removed += 1
    return removed


# -- image sequences (Predict View over a frame range) -------------------------------------------

SEQUENCE_NAME = "InstSeg Overlay Sequence"
LAYER_SEQUENCE_NAME = "InstSeg Overlay Layer Sequence"


def load_image_sequence(name: str, first_file: Any) -> Any:
    """``bpy.data.images[name]`` as an image sequence starting at ``first_file`` (``.../frame_0001.png``).

    Blender cannot pack an image sequence (pack() only reads frame 0), so the image references the
    files by absolute path: a saved .blend finds them as long as the prediction folder stays, and a
    missing file draws nothing (never the opaque black of a generated image saved without pixels).
    An existing image of that name is pointed at the new files, so camera slots that show it follow.
    """
    import bpy

    path = str(first_file)
    image = bpy.data.images.get(name)
    if image is not None and image.source != "SEQUENCE" and image.packed_file is not None:
        bpy.data.images.remove(image)  # a single packed image of ours under that name: start clean
        image = None
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
    else:
        image.filepath = path
    image.source = "SEQUENCE"
    image.reload()
    image.use_fake_user = True  # kept by a save even when no camera shows it
    return image


def configure_sequence_user(image_user: Any, first_frame: int, n_frames: int) -> None:
    """Make an ImageUser play files ``frame_<first_frame>`` ... at scene frames ``first_frame`` ...

    Blender shows file number ``(scene frame - frame_start + 1) + frame_offset`` for scene frames
    ``frame_start .. frame_start + frame_duration - 1``, so files named by their scene frame need
    ``frame_offset = first_frame - 1``.
    """
    image_user.frame_start = first_frame
    image_user.frame_offset = first_frame - 1
    image_user.frame_duration = n_frames
    image_user.use_cyclic = False
    image_user.use_auto_refresh = True  # the Image Editor follows the current frame


def set_camera_background_sequence(camera_obj: Any, image: Any, first_frame: int, n_frames: int,
                                   alpha: float = 1.0) -> Any:
    """``set_camera_background`` for an image sequence: the slot plays it in step with the scene."""
    set_camera_background(camera_obj, image, alpha)
    slot = next(bg for bg in camera_obj.data.background_images
                if bg.image is not None and bg.image.name == image.name)
    configure_sequence_user(slot.image_user, first_frame, n_frames)
    return slot


def show_sequence_in_image_editors(context: Any, image: Any, first_frame: int, n_frames: int) -> int:
    """``show_in_image_editors`` for an image sequence (each editor's own ImageUser set to play it)."""
    return show_in_image_editors(
        context, image, lambda space: configure_sequence_user(space.image_user, first_frame, n_frames))


# Labels of a dataset image (Preview Labels, the dataset browser): the same drawing as predictions.
PREVIEW_NAME = "InstSeg Preview"
BROWSER_NAME = "InstSeg Dataset"


def draw_labels(rgb: np.ndarray, masks: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The composite of ``draw_overlay`` for ground-truth masks labelled with their category names.

    The largest objects are drawn last, so their labels are placed first (``layout_labels`` places
    the last mask's label first): a big object has room for its name where a small one has none.
    """
    masks = np.asarray(masks, dtype=bool)
    order = np.argsort(masks.reshape(len(masks), -1).sum(1), kind="stable") if len(masks) else np.zeros(0, int)
    return draw_overlay(rgb, masks[order], [names[i] for i in order]).composite


def to_shown_image(name: str, img: np.ndarray) -> Any:
    """``to_blender_image`` without the fake user: a picture to look at (a preview, a browsed
    dataset image) is saved with the .blend only while an Image Editor shows it, and then with its
    pixels; the artist's file does not keep collecting them."""
    image = to_blender_image(name, img)
    image.use_fake_user = False
    return image
