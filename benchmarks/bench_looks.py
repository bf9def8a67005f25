"""Render time per image of the default look against the looks of issue 21 (HDRI, photo backplate, textures).

    .venv-blender/bin/python benchmarks/bench_looks.py [--images 4] [--resolution 256] [--samples 16]

Makes its own media with numpy/OpenCV in a temporary folder (a 1024x512 equirect EXR with a sun,
two 1024x768 photo-like PNGs, two 1024² texture sets), then renders the same seeds in this process
(``render_index``, as one generator process does) with: the default look, each look alone, and
all three. Prints seconds per image (mean over ``--images``, after one warm-up image per look
that also loads the files) and the share of the phases. The labels are the same in every row.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

import cv2  # noqa: E402


def make_media(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    h, w = 512, 1024
    v = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    sky = np.repeat(np.array([0.9, 0.6, 0.3], np.float32) * (1 - v) + np.array([0.2, 0.2, 0.25], np.float32) * v, w, 1)
    sky[100:116, 300:316] = 200.0  # a small bright sun
    (root / "hdri").mkdir()
    cv2.imwrite(str(root / "hdri" / "sky.exr"), sky)
    (root / "photos").mkdir()
    for i in range(2):
        photo = cv2.GaussianBlur((rng.random((768, 1024, 3)) * 255).astype(np.uint8), (0, 0), 6)
        cv2.imwrite(str(root / "photos" / f"table_{i}.png"), cv2.normalize(photo, None, 40, 220, cv2.NORM_MINMAX))
    for name in ("wood", "stone"):
        folder = root / "textures" / name
        folder.mkdir(parents=True)
        base = cv2.GaussianBlur((rng.random((1024, 1024, 3)) * 255).astype(np.uint8), (0, 0), 3)
        cv2.imwrite(str(folder / f"{name}_diff_1k.jpg"), base)
        cv2.imwrite(str(folder / f"{name}_rough_1k.jpg"), base[..., 0])
        cv2.imwrite(str(folder / f"{name}_nor_gl_1k.png"), np.full((1024, 1024, 3), (255, 128, 128), np.uint8))
    return {"hdri": root / "hdri", "backplate": root / "photos", "textures": root / "textures"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--samples", type=int, default=16)
    args = p.parse_args()

    from blender_instseg.blender.render_image import RenderTask, render_index
    from blender_instseg.blender.scene import builder
    from blender_instseg.core.genconfig import GeneratorConfig

    builder.reset_blender()
    with tempfile.TemporaryDirectory() as tmp:
        media = make_media(Path(tmp))
        looks = {"default": (), "hdri": ("hdri",), "backplate": ("backplate",), "textures": ("textures",),
                 "all three": ("hdri", "backplate", "textures")}
        print(f"{args.resolution}x{args.resolution}, {args.samples} spp, {args.images} images per look")
        print("| look | s/image | build | check | render | write |")
        print("|---|---|---|---|---|---|")
        for name, parts in looks.items():
            cfg = GeneratorConfig()
            cfg.render.resolution = [args.resolution, args.resolution]
            cfg.render.samples = args.samples
            cfg.camera.elevation = [45.0, 80.0]  # most cameras see no horizon: most images get the photo
            if "hdri" in parts:
                cfg.world.hdri_dir = str(media["hdri"])
            if "backplate" in parts:
                cfg.backplate.photos_dir = str(media["backplate"])
            if "textures" in parts:
                cfg.textures.textures_dir = str(media["textures"])
            out = Path(tmp) / "runs" / name.replace(" ", "_")
            out.mkdir(parents=True)
            task = RenderTask(cfg.validate(), out, 1, args.images + 1)
            render_index(task, args.images)  # warm-up: loads the files once
            phases: dict[str, float] = {}
            t0 = time.perf_counter()
            for i in range(args.images):
                render_index(task, i, phases)
            per = (time.perf_counter() - t0) / args.images
            write = sum(v for k, v in phases.items() if k.startswith("write"))
            print(f"| {name} | {per:.2f} | {phases['build'] / args.images:.2f} | "
                  f"{phases.get('check', 0.0) / args.images:.2f} | {phases['render'] / args.images:.2f} | "
                  f"{write / args.images:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
