"""Procedural asset folders for the pretraining recipe and the fine-tuning benchmark (numpy, no media).

Two disjoint sets of shapes, written as Wavefront OBJ files in the generator's ``--assets`` layout
(one subfolder per category):

- ``write_pretrain_shapes``: many random shapes (extruded outlines with random radial harmonics,
  lathes of random profiles, boxes and ellipsoids of random proportions), one category each.
  The pretrained weights learn "an object" from them, class-agnostic.
- ``write_unseen_families``: five families the pretraining never saw (cross, arrow, L-bracket,
  crescent, heart), a few random variants each: the fine-tuning benchmark's categories.

Same seed, same bytes: the meshes come from numpy's seeded generator and ``make_assets.to_obj``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from make_assets import extrude, to_obj  # noqa: E402

Mesh = tuple[np.ndarray, list[list[int]]]


def prism(outline: np.ndarray, height: float) -> Mesh:
    """Extrude a simple (possibly concave) counter-clockwise outline; caps are fans from the centroid.

    A fan is exact for star-shaped outlines about their centroid, which every outline here is.
    """
    n = len(outline)
    h = height / 2
    c = outline.mean(0)
    verts = np.concatenate([np.c_[outline, np.full(n, -h)], np.c_[outline, np.full(n, h)],
                            [[c[0], c[1], -h], [c[0], c[1], h]]])
    cb, ct = 2 * n, 2 * n + 1
    faces: list[list[int]] = []
    for i in range(n):
        j = (i + 1) % n
        faces += [[cb, j, i], [ct, n + i, n + j], [i, j, n + j, n + i]]
    return verts, faces


def lathe(profile: np.ndarray, segments: int = 24) -> Mesh:
    """Revolve a (radius, height) profile about z, closed at both ends."""
    rings = len(profile)
    ang = 2 * np.pi * np.arange(segments) / segments
    rows = [np.c_[r * np.cos(ang), r * np.sin(ang), np.full(segments, z)] for r, z in profile]
    verts = np.concatenate([*rows, [[0, 0, profile[0][1]], [0, 0, profile[-1][1]]]])
    bottom, top = rings * segments, rings * segments + 1
    last = (rings - 1) * segments
    faces: list[list[int]] = []
    for r in range(rings - 1):
        for s in range(segments):
            t = (s + 1) % segments
            faces.append([r * segments + s, r * segments + t, (r + 1) * segments + t, (r + 1) * segments + s])
    for s in range(segments):
        t = (s + 1) % segments
        faces += [[bottom, t, s], [top, last + s, last + t]]
    return verts, faces


def _blob(rng: np.random.Generator) -> Mesh:
    k = 48
    ang = 2 * np.pi * np.arange(k) / k
    r = np.ones(k)
    for harmonic in range(2, 7):
        r += rng.uniform(0, 0.35 / harmonic * 2) * np.cos(harmonic * ang + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.3, None)
    return prism(np.c_[r * np.cos(ang), r * np.sin(ang)], rng.uniform(0.2, 1.5))


def _vessel(rng: np.random.Generator) -> Mesh:
    z = np.linspace(-1, 1, 7)
    radius = np.clip(0.5 + np.cumsum(rng.uniform(-0.25, 0.25, 7)), 0.1, 1.0)
    return lathe(np.c_[radius, z])


def _box(rng: np.random.Generator) -> Mesh:
    sx, sy = rng.uniform(0.2, 1.0, 2)
    return extrude(np.array([(-sx, -sy), (sx, -sy), (sx, sy), (-sx, sy)]), rng.uniform(0.2, 2.0))


def _ellipsoid(rng: np.random.Generator) -> Mesh:
    t = np.linspace(-np.pi / 2, np.pi / 2, 11)[1:-1]
    a, c = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)
    verts, faces = lathe(np.c_[a * np.cos(t), c * np.sin(t)])
    return verts * np.array([1.0, rng.uniform(0.4, 1.0), 1.0]), faces


def _cross(rng: np.random.Generator) -> Mesh:
    a, b = rng.uniform(0.15, 0.35), 1.0
    o = [(a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a), (-a, -b)]
    return prism(np.array(o), rng.uniform(0.2, 0.5))


def _arrow(rng: np.random.Generator) -> Mesh:
    w, hw, hl = rng.uniform(0.12, 0.25), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.7)
    o = [(-1, -w), (1 - hl, -w), (1 - hl, -hw), (1, 0), (1 - hl, hw), (1 - hl, w), (-1, w)]
    return extrude_concave(np.array(o), rng.uniform(0.2, 0.4))


def _bracket(rng: np.random.Generator) -> Mesh:
    t, ly = rng.uniform(0.2, 0.4), rng.uniform(0.6, 1.0)
    o = [(-0.5, -ly), (0.8, -ly), (0.8, -ly + t), (-0.5 + t, -ly + t), (-0.5 + t, ly), (-0.5, ly)]
    return extrude_concave(np.array(o), rng.uniform(0.3, 0.8))


def _crescent(rng: np.random.Generator) -> Mesh:
    # outer: the unit circle's arc through angle pi between its two tips; inner: the same arc pulled
    # towards the tips' chord, so every inner point lies inside the circle and the outline is simple
    alpha, pull = rng.uniform(0.55, 0.7) * np.pi, rng.uniform(0.4, 0.7)
    t = np.linspace(alpha, 2 * np.pi - alpha, 21)
    outer = np.c_[np.cos(t), np.sin(t)]
    inner = np.c_[np.cos(alpha) + (np.cos(t) - np.cos(alpha)) * pull, np.sin(t)][-2:0:-1]
    o = np.r_[outer, inner]
    o = o[::-1] if _area(o) < 0 else o
    return extrude_concave(o, rng.uniform(0.2, 0.4))


def _heart(rng: np.random.Generator) -> Mesh:
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    o = np.c_[x, y] / 16 * np.array([rng.uniform(0.8, 1.0), 1.0])
    o = o[::-1] if _area(o) < 0 else o
    return prism(o, rng.uniform(0.2, 0.5))


def _area(o: np.ndarray) -> float:
    x, y = o[:, 0], o[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2


def extrude_concave(outline: np.ndarray, height: float) -> Mesh:
    """Extrude an outline that is not star-shaped: each cap is ear-clipped into triangles."""
    n = len(outline)
    tris = _ear_clip(outline)
    h = height / 2
    verts = np.concatenate([np.c_[outline, np.full(n, -h)], np.c_[outline, np.full(n, h)]])
    faces: list[list[int]] = [[c, b, a] for a, b, c in tris] + [[n + a, n + b, n + c] for a, b, c in tris]
    for i in range(n):
        j = (i + 1) % n
        faces.append([i, j, n + j, n + i])
    return verts, faces


def _ear_clip(o: np.ndarray) -> list[tuple[int, int, int]]:
    idx = list(range(len(o)))
    tris: list[tuple[int, int, int]] = []

    def cross(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    while len(idx) > 3:
        for k in range(len(idx)):
            i, j, m = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            if cross(o[i], o[j], o[m]) <= 1e-12:
                continue  # reflex corner
            inside = any(cross(o[i], o[j], o[p]) >= 0 and cross(o[j], o[m], o[p]) >= 0 and cross(o[m], o[i], o[p]) >= 0
                         for p in idx if p not in (i, j, m))
            if not inside:
                tris.append((i, j, m))
                idx.pop(k)
                break
        else:
            raise ValueError("outline is not simple")
    tris.append((idx[0], idx[1], idx[2]))
    return tris


PRETRAIN_KINDS: dict[str, Callable[[np.random.Generator], Mesh]] = {
    "blob": _blob, "vessel": _vessel, "box": _box, "ellipsoid": _ellipsoid}
UNSEEN_FAMILIES: dict[str, Callable[[np.random.Generator], Mesh]] = {
    "cross": _cross, "arrow": _arrow, "bracket": _bracket, "crescent": _crescent, "heart": _heart}


def _write(folder: Path, name: str, mesh: Mesh) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.obj").write_text(to_obj(name, *mesh), encoding="utf-8")


def write_pretrain_shapes(root: Path, per_kind: int = 12, seed: int = 0) -> Path:
    """``per_kind`` random shapes of each kind, each its own category folder; returns ``root``."""
    rng = np.random.default_rng(seed)
    for kind, make in PRETRAIN_KINDS.items():
        for k in range(per_kind):
            _write(root / f"{kind}_{k:02d}", f"{kind}_{k:02d}", make(rng))
    return root


def write_unseen_families(root: Path, variants: int = 3, seed: int = 0) -> Path:
    """``variants`` random members of each unseen family, one category folder per family; returns ``root``."""
    rng = np.random.default_rng(seed)
    for family, make in UNSEEN_FAMILIES.items():
        for k in range(variants):
            _write(root / family, f"{family}_{k}", make(rng))
    return root
