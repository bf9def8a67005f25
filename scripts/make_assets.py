"""Write the small procedural meshes in assets/ (gear, star, vase) as Wavefront OBJ files.

They are made by plain numpy geometry (extruded 2-D outlines and a lathe), not by Blender, so the
files are reproducible byte for byte: ``python scripts/make_assets.py [--out assets]``. The
generator loads them with its own OBJ reader (blender_instseg/blender/scene/meshes.py).
Each mesh is centred on the origin, sits inside the unit cube [-1, 1]^3, and has outward faces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def extrude(outline: np.ndarray, height: float) -> tuple[np.ndarray, list[list[int]]]:
    """Extrude a counter-clockwise 2-D outline (N, 2) into a closed prism with n-gon caps."""
    n = len(outline)
    z0, z1 = -height / 2, height / 2
    verts = np.concatenate([np.c_[outline, np.full(n, z0)], np.c_[outline, np.full(n, z1)]])
    faces: list[list[int]] = [list(range(n - 1, -1, -1)), list(range(n, 2 * n))]  # bottom (down), top (up)
    for i in range(n):
        j = (i + 1) % n
        faces.append([i, j, n + j, n + i])
    return verts, faces


def gear(teeth: int = 10) -> tuple[np.ndarray, list[list[int]]]:
    pts = []
    for k in range(teeth):
        a = 2 * np.pi * k / teeth
        step = 2 * np.pi / teeth
        for frac, r in ((0.0, 0.75), (0.15, 1.0), (0.45, 1.0), (0.6, 0.75)):
            ang = a + frac * step
            pts.append((r * np.cos(ang), r * np.sin(ang)))
    return extrude(np.array(pts), 0.4)


def star(points: int = 5) -> tuple[np.ndarray, list[list[int]]]:
    # a star is not convex, so its caps are fans from a centre vertex instead of one n-gon
    outline = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else 0.45
        ang = np.pi / 2 + np.pi * k / points
        outline.append((r * np.cos(ang), r * np.sin(ang)))
    o = np.array(outline)
    n = len(o)
    h = 0.25
    verts = np.concatenate([np.c_[o, np.full(n, -h)], np.c_[o, np.full(n, h)], [[0, 0, -h], [0, 0, h]]])
    cb, ct = 2 * n, 2 * n + 1
    faces: list[list[int]] = []
    for i in range(n):
        j = (i + 1) % n
        faces.append([cb, j, i])
        faces.append([ct, n + i, n + j])
        faces.append([i, j, n + j, n + i])
    return verts, faces


def vase(segments: int = 24) -> tuple[np.ndarray, list[list[int]]]:
    """A lathe of a vase profile (radius, height), closed at the bottom and open-lipped at the top."""
    profile = np.array([(0.45, -1.0), (0.75, -0.6), (0.8, -0.2), (0.55, 0.3), (0.3, 0.6), (0.4, 1.0)])
    rings = len(profile)
    ang = 2 * np.pi * np.arange(segments) / segments
    verts = [np.c_[r * np.cos(ang), r * np.sin(ang), np.full(segments, z)] for r, z in profile]
    v = np.concatenate([*verts, [[0, 0, -1.0], [0, 0, 1.0]]])
    bottom, top = rings * segments, rings * segments + 1
    faces: list[list[int]] = []
    for r in range(rings - 1):
        for s in range(segments):
            t = (s + 1) % segments
            faces.append([r * segments + s, r * segments + t, (r + 1) * segments + t, (r + 1) * segments + s])
    last = (rings - 1) * segments
    for s in range(segments):
        t = (s + 1) % segments
        faces.append([bottom, t, s])
        faces.append([top, last + s, last + t])
    return v, faces


def to_obj(name: str, verts: np.ndarray, faces: list[list[int]]) -> str:
    verts = verts - (verts.max(0) + verts.min(0)) / 2
    verts = verts / np.abs(verts).max()
    lines = [f"# {name}: made by scripts/make_assets.py", f"o {name}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += ["f " + " ".join(str(i + 1) for i in f) for f in faces]
    return "\n".join(lines) + "\n"


ASSETS = {"gear": gear, "star": star, "vase": vase}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the procedural OBJ meshes used by the generator.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets", help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in ASSETS.items():
        verts, faces = make()
        (args.out / f"{name}.obj").write_text(to_obj(name, verts, faces), encoding="utf-8")
        print(f"wrote {args.out / (name + '.obj')}: {len(verts)} vertices, {len(faces)} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
