"""Instance masks -> COCO segmentation (compressed RLE, polygons), bbox and area.

Everything here works from one mask representation at a time and is shared by the generator
(id maps from the Object Index pass), the model process (predicted mask stacks) and the
validator, so all three agree on what ``area`` and ``bbox`` mean:

* ``area`` is the mask pixel count (not a polygon area).
* ``bbox`` is the tight ``[x, y, w, h]`` of the mask in pixels, ``x, y`` the left/top pixel
  edge, so a 1-pixel mask at column 3, row 5 has bbox ``[3, 5, 1, 1]``.

Id maps are encoded straight from their run structure: one pass over the column-major map finds
every place where the id changes, and the runs of all instances fall out of that at once, so the
cost does not grow with (instances x pixels) and no (H, W, N) stack is ever allocated.

Polygons are traced on a 2x nearest-upsampled crop, which puts the contour a quarter pixel inside
the pixel edges: every pixel centre of the mask is inside it and every other centre is outside,
so pycocotools' rasteriser gives the mask back (1-pixel objects included). Holes are joined to
their outer ring by a zero-width bridge, because COCO unions the polygons of a list (a hole given
as its own polygon would be filled) while the rasteriser is even-odd within one polygon.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import cv2
import numpy as np
from pycocotools import mask as mask_utils

log = logging.getLogger(__name__)

#: Lookup tables are used to select/compact ids up to this value; larger ids use np.unique.
_LUT_MAX_ID = 1 << 22


@dataclass
class InstanceEncoding:
    """COCO geometry of one instance."""

    instance_id: int
    area: int
    bbox: list[float]
    rle: dict[str, Any]
    polygons: list[list[float]] | None = None
    dropped_fragments: int = 0


# --------------------------------------------------------------------------------------------
# small helpers


def bbox_of_mask(mask: np.ndarray) -> list[float]:
    """Tight ``[x, y, w, h]`` of the nonzero pixels; ``[0, 0, 0, 0]`` for an empty mask."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    cols = np.flatnonzero(m.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


def _rle_to_json(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def rle_string_counts(counts: bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString`` in Python).

    pycocotools decodes an RLE whose runs do not cover the image without complaint and returns
    uninitialised memory for the rest, so the validator needs the runs themselves to check them.
    """
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("RLE counts string ends in the middle of a number")
            c = counts[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE counts string has an invalid character {chr(counts[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def _rle_for_pycocotools(segmentation: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """Normalise a COCO RLE dict (compressed str/bytes or uncompressed list) to pycocotools' form."""
    if "counts" not in segmentation or "size" not in segmentation:
        raise ValueError("RLE segmentation needs 'counts' and 'size'")
    size = segmentation["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [height, width], got {size!r}")
    if [int(size[0]), int(size[1])] != [int(height), int(width)]:
        raise ValueError(f"RLE size {list(size)} does not match image size [{height}, {width}]")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        if sum(counts) != height * width:
            raise ValueError("uncompressed RLE counts do not sum to height*width")
        return mask_utils.frPyObjects(segmentation, int(height), int(width))
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("RLE counts string is not ASCII") from None
    if not isinstance(counts, bytes):
        raise ValueError(f"RLE 'counts' must be a string or a list, got {type(counts).__name__}")
    runs = rle_string_counts(counts)
    if any(r < 0 for r in runs):
        raise ValueError("RLE counts string holds negative runs")
    if sum(runs) != height * width:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels, expected {height}x{width} = {height * width}")
    return {"size": [int(height), int(width)], "counts": counts}


def decode_segmentation(segmentation: dict | list, height: int, width: int) -> np.ndarray:
    """Decode any COCO segmentation (compressed/uncompressed RLE or polygon list) to uint8 HxW 0/1.

    Raises ``ValueError`` with one readable line for anything malformed, so the validator can
    report it against the annotation instead of crashing.
    """
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if isinstance(segmentation, dict):
        rle = _rle_for_pycocotools(segmentation, h, w)
        try:
            out = mask_utils.decode(rle)
        except Exception as exc:  # pycocotools raises bare Exceptions on bad counts
            raise ValueError(f"RLE cannot be decoded: {exc}") from None
        if out.shape != (h, w):
            raise ValueError(f"RLE decodes to shape {out.shape}, expected {(h, w)}")
        return np.ascontiguousarray(out, dtype=np.uint8)
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((h, w), np.uint8)
        polys: list[list[float]] = []
        for poly in segmentation:
            if not isinstance(poly, (list, tuple)) or not all(isinstance(v, (int, float)) for v in poly):
                raise ValueError("polygon must be a flat list of numbers [x1, y1, x2, y2, ...]")
            if len(poly) < 6 or len(poly) % 2:
                raise ValueError(f"polygon needs an even number (>= 6) of coordinates, got {len(poly)}")
            polys.append([float(v) for v in poly])
        rles = mask_utils.frPyObjects(polys, h, w)
        return np.ascontiguousarray(mask_utils.decode(mask_utils.merge(rles)), dtype=np.uint8)
    raise ValueError(f"segmentation must be an RLE dict or a polygon list, got {type(segmentation).__name__}")


# --------------------------------------------------------------------------------------------
# polygons


def _bridge_hole(ring: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Insert ``hole`` into ``ring`` through a zero-width bridge between two close vertices.

    The even-odd rasteriser ignores the bridge wherever it runs (its two copies cancel), so an
    exact closest pair is not needed: alternating nearest-vertex searches (linear, not the
    quadratic all-pairs matrix) give a short bridge, which keeps the outline tidy for viewers.
    """
    j = int(np.argmin(hole[:, 1] * 1e6 + hole[:, 0]))  # topmost vertex of the hole
    i = 0
    for _ in range(2):
        i = int(np.argmin(((ring - hole[j]) ** 2).sum(1)))
        j = int(np.argmin(((hole - ring[i]) ** 2).sum(1)))
    hole_loop = np.concatenate([np.roll(hole, -j, axis=0), hole[j:j + 1]])
    return np.concatenate([ring[: i + 1], hole_loop, ring[i:]])


def _contours_to_polygons(contours: tuple, hierarchy: np.ndarray | None,
                          offset_x: float, offset_y: float) -> tuple[list[list[float]], int]:
    """RETR_CCOMP contours of a 2x-upsampled mask -> COCO polygons in original pixel coordinates."""
    if hierarchy is None or not contours:
        return [], 0
    hier = hierarchy.reshape(-1, 4)
    polygons: list[list[float]] = []
    dropped = 0
    for k, contour in enumerate(contours):
        if hier[k, 3] != -1:  # a hole: handled with its parent
            continue
        ring = contour.reshape(-1, 2)
        if len(ring) < 3:
            dropped += 1
            continue
        ring = ring.astype(np.float64)
        child = hier[k, 2]
        while child != -1:
            hole = contours[child].reshape(-1, 2).astype(np.float64)
            if len(hole) >= 3:
                ring = _bridge_hole(ring, hole)
            child = hier[child, 0]
        # upsampled pixel centre u -> original coordinate (u + 0.5) / 2, then the crop offset
        xy = (ring + 0.5) * 0.5
        xy[:, 0] += offset_x
        xy[:, 1] += offset_y
        polygons.append(xy.reshape(-1).tolist())
    return polygons, dropped


def _polygons_of_crop(crop: np.ndarray, x0: int, y0: int) -> tuple[list[list[float]], int]:
    """Polygons of a binary crop whose top-left pixel is (x0, y0) in the full image."""
    c8 = crop.view(np.uint8) if crop.dtype == bool else (crop != 0).view(np.uint8)
    padded = cv2.copyMakeBorder(c8, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    up = cv2.resize(padded, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    # upsampled padded centre u -> original coordinate (u + 0.5) / 2 - 1 + x0
    return _contours_to_polygons(contours, hierarchy, x0 - 1.0, y0 - 1.0)


def mask_to_polygons(mask: np.ndarray) -> tuple[list[list[float]], int]:
    """COCO polygons of a binary mask, holes bridged into their outer ring; (polygons, dropped).

    ``dropped`` counts pieces that could not form a polygon with >= 3 points; with the 2x
    tracing even single pixels form one, so it is 0 unless OpenCV returns a degenerate contour.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    x, y, w, h = (int(v) for v in bbox_of_mask(m))
    if w == 0:
        return [], 0
    return _polygons_of_crop(m[y:y + h, x:x + w] != 0, x, y)


# --------------------------------------------------------------------------------------------
# id maps and mask stacks


def _select_ids(flat: np.ndarray, ids: Iterable[int] | None) -> np.ndarray:
    """Zero every pixel whose id is not wanted (non-positive ids are always background)."""
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    if np.issubdtype(flat.dtype, np.signedinteger) and flat.size and flat.min() < 0:
        flat = np.where(flat > 0, flat, 0)
    if ids is None:
        return flat
    wanted = np.asarray(sorted({int(i) for i in ids if int(i) > 0}), dtype=np.int64)
    if wanted.size == 0:
        return np.zeros_like(flat)
    top = int(flat.max()) if flat.size else 0
    if top <= _LUT_MAX_ID:
        keep = np.zeros(top + 1, dtype=bool)
        keep[wanted[wanted <= top]] = True
        return np.where(keep[flat], flat, 0)
    return np.where(np.isin(flat, wanted), flat, 0)


def encode_id_map(id_map: np.ndarray, *, ids: Iterable[int] | None = None,
                  polygons: bool = False) -> list[InstanceEncoding]:
    """Encode every instance (id > 0) of an HxW integer id map, sorted by id.

    With ``ids``, only those ids are encoded; ids absent from the map are skipped.
    """
    arr = np.asarray(id_map)
    if arr.ndim != 2:
        raise ValueError(f"id map must be 2-D (H, W), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"id map must hold integers, got dtype {arr.dtype}")
    h, w = arr.shape
    n = h * w
    if n == 0:
        return []
    # column-major order is what COCO RLE counts run along
    flat = _select_ids(np.ascontiguousarray(arr.T).reshape(-1), ids)

    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change]) if flat[0] > 0 else change
    starts = starts[flat[starts] > 0]
    ends = np.concatenate([change, [n]]) if flat[-1] > 0 else change
    ends = ends[flat[ends - 1] > 0]
    if starts.size == 0:
        return []
    start_ids = flat[starts]
    end_ids = flat[ends - 1]
    # runs of one id, in position order: stable sort by id keeps position order inside each id
    so = np.argsort(start_ids, kind="stable")
    eo = np.argsort(end_ids, kind="stable")
    run_ids, run_s, run_e = start_ids[so], starts[so], ends[eo]

    first = np.concatenate([[True], run_ids[1:] != run_ids[:-1]])
    group_start = np.flatnonzero(first)
    group_end = np.concatenate([group_start[1:], [run_ids.size]])
    prev_end = np.concatenate([[0], run_e[:-1]])
    prev_end[first] = 0
    gaps = run_s - prev_end
    lengths = run_e - run_s

    # counts per instance: gap0, len0, gap1, len1, ..., tail
    inst_ids = run_ids[group_start]
    n_runs = group_end - group_start
    tails = n - run_e[group_end - 1]
    total = 2 * run_ids.size + inst_ids.size
    counts = np.empty(total, dtype=np.int64)
    offsets = 2 * group_start + np.arange(inst_ids.size)  # where each instance's counts begin
    run_rank: np.ndarray = np.arange(run_ids.size) - np.repeat(group_start, n_runs)
    run_pos = np.repeat(offsets, n_runs) + 2 * run_rank
    counts[run_pos] = gaps
    counts[run_pos + 1] = lengths
    tail_pos = offsets + 2 * n_runs
    counts[tail_pos] = tails
    bounds = np.concatenate([offsets, [total]])

    # an instance that reaches the last pixel has no trailing zero run (as pycocotools writes it)
    bounds_end = bounds[1:] - (tails == 0)
    objs = [{"size": [h, w], "counts": counts[bounds[k]:bounds_end[k]]} for k in range(inst_ids.size)]
    rles = mask_utils.frPyObjects(objs, h, w)
    areas = np.add.reduceat(lengths, group_start)
    boxes = mask_utils.toBbox(rles)

    out: list[InstanceEncoding] = []
    for k, inst in enumerate(inst_ids.tolist()):
        bbox = [float(v) for v in boxes[k]]
        enc = InstanceEncoding(instance_id=int(inst), area=int(areas[k]), bbox=bbox, rle=_rle_to_json(rles[k]))
        if polygons:
            x0, y0, bw, bh = (int(v) for v in bbox)
            crop = arr[y0:y0 + bh, x0:x0 + bw] == inst
            enc.polygons, enc.dropped_fragments = _polygons_of_crop(crop, x0, y0)
        out.append(enc)
    return out


def encode_masks(masks: np.ndarray, *, polygons: bool = False) -> list[InstanceEncoding]:
    """Encode an (N, H, W) stack of binary masks; instance_id = position + 1, empty masks kept."""
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {arr.shape}")
    n, h, w = arr.shape
    if n == 0:
        return []
    # (N, W, H) C-order viewed as (H, W, N) is the Fortran layout pycocotools wants: one copy.
    stack = np.ascontiguousarray((arr != 0).transpose(0, 2, 1), dtype=np.uint8).transpose(2, 1, 0)
    rles = mask_utils.encode(stack)
    areas = mask_utils.area(rles)
    boxes = mask_utils.toBbox(rles)
    out: list[InstanceEncoding] = []
    for k in range(n):
        bbox = [float(v) for v in boxes[k]]
        enc = InstanceEncoding(instance_id=k + 1, area=int(areas[k]), bbox=bbox, rle=_rle_to_json(rles[k]))
        if polygons:
            if enc.area:
                x0, y0, bw, bh = (int(v) for v in bbox)
                enc.polygons, enc.dropped_fragments = _polygons_of_crop(arr[k, y0:y0 + bh, x0:x0 + bw] != 0, x0, y0)
            else:
                enc.polygons = []
        out.append(enc)
    return out


def polygons_iou(polygons: list[list[float]], mask: np.ndarray) -> float:
    """IoU between a polygon list (rasterised by pycocotools) and a binary mask; 1.0 if both empty."""
    m = np.asarray(mask) != 0
    p = decode_segmentation(polygons, m.shape[0], m.shape[1]).astype(bool)
    union = np.logical_or(m, p).sum()
    return 1.0 if union == 0 else float(np.logical_and(m, p).sum() / union)
