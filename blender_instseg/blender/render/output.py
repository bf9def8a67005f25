"""Image files of a dataset (RGB PNG or JPEG, 16-bit id-map PNG, float32 EXR depth) and the preview sheet.

Files are encoded in memory with OpenCV and written through ``core.fileio`` (temp name + rename),
so a killed run never leaves a truncated image behind. Encoding is deterministic: same arrays,
same bytes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read lazily by OpenCV at the first EXR call

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ...core.fileio import atomic_write_bytes  # noqa: E402
from ...core.sensor import encode_image  # noqa: E402


def _encode(ext: str, array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, array)
    if not ok:
        raise OSError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes()


def write_rgb(path: Path, rgb: np.ndarray, jpeg_quality: int | None = None) -> None:
    """RGB uint8 as a PNG, or a JPEG of ``jpeg_quality`` when ``path`` ends in .jpg."""
    atomic_write_bytes(path, encode_image(rgb, path.suffix.lower(), jpeg_quality))


def write_id_map(path: Path, ids: np.ndarray) -> None:
    atomic_write_bytes(path, _encode(".png", ids.astype(np.uint16)))


def write_depth(path: Path, depth: np.ndarray) -> None:
    """float32 metres along the camera axis; 0 where no surface was hit."""
    atomic_write_bytes(path, _encode(".exr", depth.astype(np.float32)))


def read_depth(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(f"cannot read depth file {path}")
    return data


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    pal = rng.integers(60, 256, size=(max(n, 1) + 1, 3), dtype=np.int64).astype(np.uint8)
    pal[0] = 0
    return pal


def contact_sheet(tiles: list[tuple[np.ndarray | None, np.ndarray]], columns: int = 4, tile: int = 192) -> np.ndarray:
    """A grid of (rgb or None, id map) pairs: instances tinted and outlined on the image (BGR out)."""
    cells = []
    for rgb, ids in tiles:
        pal = _palette(int(ids.max()))
        base = rgb[..., ::-1].astype(np.float32) if rgb is not None else np.full(ids.shape + (3,), 40, np.float32)
        colour = pal[ids].astype(np.float32)
        fg = ids > 0
        out = base.copy()
        out[fg] = 0.55 * base[fg] + 0.45 * colour[fg]
        edges = cv2.morphologyEx(ids.astype(np.uint16), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        out[edges & fg] = colour[edges & fg]
        out = np.clip(out, 0, 255).astype(np.uint8)
        h, w = ids.shape
        s = tile / max(h, w)
        out = cv2.resize(out, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_NEAREST)
        cell = np.zeros((tile, tile, 3), np.uint8)
        cell[: out.shape[0], : out.shape[1]] = out
        cells.append(cell)
    if not cells:
        return np.zeros((tile, tile, 3), np.uint8)
    columns = min(columns, len(cells))
    while len(cells) % columns:
        cells.append(np.zeros((tile, tile, 3), np.uint8))
    rows = [np.concatenate(cells[i:i + columns], axis=1) for i in range(0, len(cells), columns)]
    return np.concatenate(rows, axis=0)


def write_preview(path: Path, tiles: list[tuple[np.ndarray | None, np.ndarray]]) -> None:
    atomic_write_bytes(path, _encode(".png", contact_sheet(tiles)))


def read_rgb(path: Path) -> np.ndarray | None:
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if data is None else data[..., ::-1]


def read_id_map(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ValueError(f"cannot read id map {path}")
    return data
