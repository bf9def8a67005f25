"""SOLOv2 target assignment: which grid cells of which level are responsible for which instance.

Plain numpy so it runs inside data-loader workers. Follows mmdetection's SOLO ``_get_targets_single``:
an instance goes to every level whose scale range holds sqrt(box area); on that grid it owns the
cells of its "centre region" (centre of mass +- sigma/2 of the box, clipped to the 3x3 cells around
the centre cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def assign_cells(masks: np.ndarray, grids: Sequence[int], scale_ranges: Sequence[tuple[float, float]],
                 sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (cell_index, cell_inst): flat cell indices over the concatenated grids and the instance of each.

    masks: (N, H, W) uint8/bool at network input size. Scale ranges are fractions of max(H, W).
    Larger instances are assigned first, so where centre regions collide the smaller object wins
    (it has fewer cells to lose).
    """
    n = masks.shape[0]
    owner = [np.full((g, g), -1, np.int64) for g in grids]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    h, w = masks.shape[1:]
    size = float(max(h, w))
    ys_idx = np.arange(h, dtype=np.float64)
    xs_idx = np.arange(w, dtype=np.float64)
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    areas = masks.reshape(n, -1).sum(1)
    info = []
    for i in range(n):
        if areas[i] == 0:
            continue
        yr = np.flatnonzero(rows[i])
        xr = np.flatnonzero(cols[i])
        bh, bw = yr[-1] - yr[0] + 1, xr[-1] - xr[0] + 1
        m = masks[i].astype(np.float64)
        cy = float((m.sum(1) * ys_idx).sum() / areas[i]) + 0.5
        cx = float((m.sum(0) * xs_idx).sum() / areas[i]) + 0.5
        info.append((bh * bw, i, cy, cx, bh, bw))
    info.sort(key=lambda r: -r[0])
    for level, (grid, (lo, hi)) in enumerate(zip(grids, scale_ranges)):
        for box_area, i, cy, cx, bh, bw in info:
            scale = np.sqrt(box_area) / size
            if not (lo <= scale <= hi):
                continue
            half_h, half_w = 0.5 * bh * sigma, 0.5 * bw * sigma
            ch, cw = min(grid - 1, int(cy / h * grid)), min(grid - 1, int(cx / w * grid))
            top = max(0, int((cy - half_h) / h * grid), ch - 1)
            down = min(grid - 1, int((cy + half_h) / h * grid), ch + 1)
            left = max(0, int((cx - half_w) / w * grid), cw - 1)
            right = min(grid - 1, int((cx + half_w) / w * grid), cw + 1)
            owner[level][top:down + 1, left:right + 1] = i
    flat = np.concatenate([o.reshape(-1) for o in owner])
    cells = np.flatnonzero(flat >= 0)
    return cells.astype(np.int64), flat[cells]


@dataclass(frozen=True)
class SoloTargets:
    """SOLOv2's per-sample target function for the data set (picklable, so data-loader workers can run it)."""

    grids: Sequence[int]
    scale_ranges: Sequence[tuple[float, float]]
    sigma: float

    def __call__(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cells, inst = assign_cells(sample["masks"], self.grids, self.scale_ranges, self.sigma)
        return {"cell_index": cells, "cell_inst": inst}
