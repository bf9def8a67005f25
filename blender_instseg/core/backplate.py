"""Photo backplates without bpy: which camera may have one, the photo cut to the frame, the composite.

The Blender side renders the scene with a transparent film and a shadow-catcher ground, which gives
the objects over nothing (the Combined pass, premultiplied RGBA) and the factor by which their
shadows darken the ground (Cycles' Shadow Catcher pass). The image is then
``objects + (1 - alpha) * photo * shadow``, in linear light, here with numpy. The photo is only
ever pixels of the RGB image: the id map comes from the Object Index pass, where the ground is 0.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read by OpenCV at its first EXR call
import cv2  # noqa: E402

SENSOR_WIDTH_MM = 36.0  # the generator's cameras: the sensor width spans the longer image side

# photo path -> the decoded photo, shrunk once to what the renders need (a file is decoded once per process)
_PHOTOS: dict[tuple[str, int], np.ndarray] = {}


def sees_no_horizon(elevation_deg: float, focal_length_mm: float, width: int, height: int, margin_deg: float) -> bool:
    """True when a camera pitched down by ``elevation_deg`` sees only ground (up to ``margin_deg``
    below the horizon at the frame's top edge), as a photo taken looking down at a surface does."""
    half_v = math.degrees(math.atan(SENSOR_WIDTH_MM / 2.0 * height / max(width, height) / focal_length_mm))
    return elevation_deg - half_v >= margin_deg


def _decoded(path: Path, shortest: int) -> np.ndarray:
    """The photo as uint8 RGB, its shorter side shrunk to at most ``shortest`` pixels (cached)."""
    key = (str(path), shortest)
    image = _PHOTOS.get(key)
    if image is None:
        try:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error:
            bgr = None
        if bgr is None or bgr.size == 0:
            raise RuntimeError(f"cannot read photo {path} (corrupt, missing or not an image)")
        h, w = bgr.shape[:2]
        if min(h, w) > shortest:
            f = shortest / min(h, w)
            bgr = cv2.resize(bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(bgr[..., ::-1])
        _PHOTOS[key] = image
    return image


def photo_linear(path: Path, width: int, height: int, zoom: float, cx: float, cy: float, flip: bool) -> np.ndarray:
    """``width`` x ``height`` linear-light RGB float32 cut from the photo: the largest window of the
    frame's aspect ratio, shrunk by ``zoom`` (>= 1), placed at (``cx``, ``cy``) in [0, 1] of the
    room left, mirrored left-right when ``flip``."""
    image = _decoded(path, 2 * max(width, height))
    ph, pw = image.shape[:2]
    aspect = width / height
    cw, ch = (pw, pw / aspect) if pw / ph <= aspect else (ph * aspect, ph)
    cw, ch = cw / zoom, ch / zoom
    x0, y0 = (pw - cw) * cx, (ph - ch) * cy
    x1, y1 = int(round(x0)), int(round(y0))
    x2, y2 = max(x1 + 1, int(round(x0 + cw))), max(y1 + 1, int(round(y0 + ch)))
    crop = image[y1:y2, x1:x2]
    if flip:
        crop = crop[:, ::-1]
    shrink = crop.shape[1] > width
    out = cv2.resize(np.ascontiguousarray(crop), (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    srgb = out.astype(np.float32) / 255.0
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def composite(combined: np.ndarray, shadow: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """The render (premultiplied RGBA over a transparent film) over ``photo`` darkened by ``shadow``
    (the Shadow Catcher pass; clipped to [0, 1]: shadows darken, light bounced onto the ground is
    left out, its few samples would speckle the photo). Returns opaque RGBA, linear."""
    alpha = combined[..., 3:4]
    rgb = combined[..., :3] + (1.0 - alpha) * photo * np.clip(shadow[..., :3], 0.0, 1.0)
    return np.concatenate([rgb, np.ones_like(alpha)], axis=2).astype(np.float32)
