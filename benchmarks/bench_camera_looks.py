"""Render time per image with each camera / sensor / transparency look ([lens], [sensor], materials.*).

    .venv/bin/python benchmarks/bench_camera_looks.py [--images 4] [--resolution 256] [--samples 16]

Each look renders the same seeds with the default scene (RGB, anti-aliased); a look whose images
need their own label render (DOF, motion blur, alpha-cut) pays for it in "check". Prints seconds
per image (whole render_index: build, checks / label render, RGB render, annotation, files) and
the ratio to the plain look.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOOKS: dict[str, dict] = {
    "plain": {},
    "dof": {"lens": {"dof_probability": 1.0}},
    "motion_blur": {"lens": {"motion_blur_probability": 1.0}},
    "sensor+jpeg": {"sensor": {"noise_probability": 1.0, "exposure_probability": 1.0,
                               "white_balance_probability": 1.0, "jpeg_probability": 1.0}},
    "glass+alpha_cut footprint": {"materials": {"glass_probability": 0.3, "alpha_cut_probability": 0.3}},
    "glass+alpha_cut opaque": {"materials": {"glass_probability": 0.3, "alpha_cut_probability": 0.3,
                                             "transparency_labels": "opaque"}},
    "all": {"lens": {"dof_probability": 1.0, "motion_blur_probability": 1.0},
            "sensor": {"noise_probability": 1.0, "exposure_probability": 1.0, "white_balance_probability": 1.0,
                       "jpeg_probability": 1.0},
            "materials": {"glass_probability": 0.3, "alpha_cut_probability": 0.3}},
}


def per_image(look: dict, n: int, res: int, samples: int, out: Path) -> tuple[float, dict[str, float]]:
    from blender_instseg.blender import generate, render_image
    from blender_instseg.blender.render import cycles as cy
    from blender_instseg.blender.scene import builder
    from blender_instseg.core.formats import dataset
    from blender_instseg.core.genconfig import GeneratorConfig

    data = {**look, "render": {"resolution": [res, res], "samples": samples}}
    cfg = GeneratorConfig.from_dict(data).validate()
    out.mkdir(parents=True, exist_ok=True)
    dataset.write_dataset_config(out, generate.dataset_config(cfg, 0, n))
    job = render_image.RenderTask(cfg, out, 0, n + 1, device=cy.choose_device("auto"))
    builder.reset_blender()
    render_image.render_index(job, n, {})  # warm-up (first Cycles sync, shape meshes), not counted
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(n):
        render_image.render_index(job, i, timings)
    return (time.perf_counter() - t0) / n, {k: v / n for k, v in timings.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--samples", type=int, default=16)
    a = p.parse_args()
    plain = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, look in LOOKS.items():
            sec, phases = per_image(look, a.images, a.resolution, a.samples, Path(tmp) / name.replace(" ", "_"))
            plain = plain or sec
            parts = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            print(f"{name:28s} {sec:6.2f} s/image  x{sec / plain:4.2f}  ({parts})")


if __name__ == "__main__":
    main()
