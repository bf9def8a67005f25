"""Photo backplates: a shadow-catcher ground and the photo the render is composited over.

The choice (which photo, its crop and mirror) is drawn from the scene's own ``backplate`` stream
(six draws, whatever the outcome), after the camera: only a camera that sees no horizon gets a
photo (``core.backplate.sees_no_horizon``), so the camera is never changed for a photo and the
labels stay what the seed gave. The ground keeps pass index 0 and the photo is added to the RGB
only (``core.backplate.composite``), so the photo never reaches the id map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ...core import backplate as plate
from ...core.genconfig import GeneratorConfig
from ...generator import media


@dataclass(frozen=True)
class BackplateSpec:
    file: str  # relative to backplate.photos_dir
    path: Path
    zoom: float  # the crop is the largest window of the frame's shape, shrunk by this (1 .. 1.5)
    cx: float  # where the crop sits in the room left, 0..1
    cy: float
    flip: bool


def sample_backplate(rng: np.random.Generator, cfg: GeneratorConfig, camera: bpy.types.Object) -> BackplateSpec | None:
    """This image's photo, or None (no folder, the draw said no, or the camera sees the horizon)."""
    use, pick, zoom, cx, cy, flip = (float(v) for v in rng.uniform(size=6))
    b = cfg.backplate
    if not b.photos_dir or not cfg.world.ground or use >= b.probability:
        return None
    params = camera["instseg_params"]
    w, h = cfg.render.resolution
    if not plate.sees_no_horizon(float(params["elevation_deg"]), float(params["focal_length"]), w, h, b.horizon_margin):
        return None
    files = media.photo_files(b.photos_dir)
    if not files:
        return None
    rel = files[min(int(pick * len(files)), len(files) - 1)]
    return BackplateSpec(rel, Path(b.photos_dir) / rel, 1.0 + 0.5 * zoom, cx, cy, flip < 0.5)


def catch_shadows(ground: bpy.types.Object) -> None:
    """The ground only receives shadows: invisible in the render except where objects shade it."""
    ground.is_shadow_catcher = True


def composite_passes(passes: dict[str, np.ndarray], spec: BackplateSpec, width: int, height: int) -> dict[str, np.ndarray]:
    """The captured passes with Combined replaced by the render over the photo (needs the Shadow Catcher pass)."""
    shadow = passes.get("Shadow Catcher")
    if shadow is None:
        raise RuntimeError(f"no Shadow Catcher pass in the render result (passes: {sorted(passes)})")
    photo = plate.photo_linear(spec.path, width, height, spec.zoom, spec.cx, spec.cy, spec.flip)
    return {**passes, "Combined": plate.composite(passes["Combined"], shadow, photo)}
