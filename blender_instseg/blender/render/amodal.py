"""Amodal (unoccluded) masks by exact pixel-centre rasterisation of each object's triangles, in numpy.

Why this method: a straight line in 3-D projects to a straight line under a pinhole camera, so
"the camera ray through pixel centre (c+0.5, r+0.5) hits triangle T" is exactly "the pixel centre
lies inside T's projection" (after clipping T at the camera's near plane, as Cycles does). That
is the same test the Object Index pass makes at ``filter_width = 0.01``, without depth, for one
object alone. A scanline fill of every (triangle, row) pair, vectorised in numpy, costs about a
millisecond per object, versus ~1 µs per ray in Python for BVHTree ray casts (65k+ rays per
object per image) or a full Cycles render per object (40-170 ms each). Pixels whose centre lies
within float rounding of an edge can disagree with Cycles; the caller unions the visible mask
into the amodal one so "visible is a subset of amodal" holds exactly, and counts such fixes.

Truncation is geometric: an object is truncated when its projected (near-clipped) silhouette
leaves the image rectangle, or part of it lies behind the near plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Camera:
    """A pinhole camera in Blender's convention: world_to_camera (4x4), projection (4x4), image size."""

    world_to_camera: np.ndarray
    projection: np.ndarray
    width: int
    height: int
    clip_start: float


@dataclass
class AmodalResult:
    mask: np.ndarray  # (H, W) bool, inside the frame
    truncated: bool
    bbox_px: tuple[int, int, int, int] | None  # r0, r1, c0, c1 of the in-frame mask (inclusive), None if empty


def camera_from_blender(scene, cam_obj, depsgraph) -> Camera:  # type: ignore[no-untyped-def]
    """Read the camera matrices Blender itself uses for this render (sensor fit, shift and lens included)."""
    r = scene.render
    w = int(r.resolution_x * r.resolution_percentage / 100)
    h = int(r.resolution_y * r.resolution_percentage / 100)
    proj = cam_obj.calc_matrix_camera(depsgraph, x=w, y=h, scale_x=r.pixel_aspect_x, scale_y=r.pixel_aspect_y)
    w2c = cam_obj.matrix_world.inverted()
    return Camera(np.array(w2c, np.float64), np.array(proj, np.float64), w, h, float(cam_obj.data.clip_start))


def _clip_near(tris: np.ndarray, near: float) -> tuple[np.ndarray, bool]:
    """Clip camera-space triangles (T,3,3) against z = -near (camera looks down -Z). Returns (tris, clipped?)."""
    z = tris[:, :, 2]
    inside = z <= -near
    all_in = inside.all(axis=1)
    any_in = inside.any(axis=1)
    partial = any_in & ~all_in
    if not partial.any():
        return tris[all_in], bool((~all_in).any())
    out = [tris[all_in]]
    for tri in tris[partial]:  # rare: triangles crossing the near plane; Sutherland-Hodgman on one plane
        poly = []
        for i in range(3):
            a, b = tri[i], tri[(i + 1) % 3]
            a_in, b_in = a[2] <= -near, b[2] <= -near
            if a_in:
                poly.append(a)
            if a_in != b_in:
                t = (-near - a[2]) / (b[2] - a[2])
                poly.append(a + t * (b - a))
        for k in range(1, len(poly) - 1):
            out.append(np.stack([poly[0], poly[k], poly[k + 1]])[None])
    return np.concatenate(out, axis=0), True


def project(world_tris: np.ndarray, cam: Camera) -> tuple[np.ndarray, bool]:
    """World-space triangles (T,3,3) -> pixel-space (T,3,2) with y down; plus 'part is behind the near plane'."""
    t = world_tris.reshape(-1, 3)
    cam_pts = t @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
    cam_tris, clipped = _clip_near(cam_pts.reshape(-1, 3, 3), cam.clip_start)
    if len(cam_tris) == 0:
        return np.zeros((0, 3, 2)), clipped
    return _to_pixels(cam_tris.reshape(-1, 3), cam).reshape(-1, 3, 2), clipped


def _to_pixels(cam_pts: np.ndarray, cam: Camera) -> np.ndarray:
    """Camera-space points (N,3) in front of the near plane -> pixel coordinates (N,2), x right / y down."""
    clip = cam_pts @ cam.projection[:3, :3].T + cam.projection[:3, 3]
    wcoord = cam_pts @ cam.projection[3, :3] + cam.projection[3, 3]
    ndc = clip[:, :2] / wcoord[:, None]
    px = np.empty_like(ndc)
    px[:, 0] = (ndc[:, 0] + 1.0) * 0.5 * cam.width
    px[:, 1] = (1.0 - ndc[:, 1]) * 0.5 * cam.height
    return px


def rasterize(tris2d: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel-centre coverage of the union of 2-D triangles (T,3,2), x right / y down, as an (H, W) bool mask."""
    mask = np.zeros((height, width), bool)
    if len(tris2d) == 0:
        return mask
    ys = tris2d[:, :, 1]
    r0 = np.maximum(np.ceil(ys.min(1) - 0.5), 0).astype(np.int64)
    r1 = np.minimum(np.floor(ys.max(1) - 0.5), height - 1).astype(np.int64)
    xs = tris2d[:, :, 0]
    c0 = np.maximum(np.ceil(xs.min(1) - 0.5), 0)
    c1 = np.minimum(np.floor(xs.max(1) - 0.5), width - 1)
    # a triangle whose bounding box holds no pixel centre covers none: dropping it changes nothing,
    # and most triangles of a dense mesh seen from afar are such slivers between pixel centres
    keep = (r1 >= r0) & (c1 >= c0)
    if not keep.any():
        return mask
    tris2d, r0, r1 = tris2d[keep], r0[keep], r1[keep]
    n_rows = r1 - r0 + 1
    tri_idx = np.repeat(np.arange(len(tris2d)), n_rows)
    starts = np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    rows = r0[tri_idx] + (np.arange(len(tri_idx)) - starts)
    yc = rows + 0.5
    t = tris2d[tri_idx]  # (P, 3, 2)
    xl = np.full(len(rows), np.inf)
    xr = np.full(len(rows), -np.inf)
    for i in range(3):
        a, b = t[:, i], t[:, (i + 1) % 3]
        ya, yb, xa, xb = a[:, 1], b[:, 1], a[:, 0], b[:, 0]
        lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
        crossing = (yc >= lo) & (yc <= hi) & (ya != yb)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(crossing, xa + (yc - ya) / np.where(ya != yb, yb - ya, 1.0) * (xb - xa), 0.0)
        xl = np.where(crossing, np.minimum(xl, x), xl)
        xr = np.where(crossing, np.maximum(xr, x), xr)
        flat = (ya == yb) & (ya == yc)  # an edge lying exactly on the row centre
        xl = np.where(flat, np.minimum(xl, np.minimum(xa, xb)), xl)
        xr = np.where(flat, np.maximum(xr, np.maximum(xa, xb)), xr)
    c0 = np.maximum(np.ceil(xl - 0.5), 0)
    c1 = np.minimum(np.floor(xr - 0.5), width - 1)
    ok = np.isfinite(xl) & (c1 >= c0)
    if not ok.any():
        return mask
    rows, c0, c1 = rows[ok], c0[ok].astype(np.int64), c1[ok].astype(np.int64)
    # fill spans inside the covered rows/columns only: one difference array + cumulative sum
    ra, rb, ca, cb = int(rows.min()), int(rows.max()), int(c0.min()), int(c1.max())
    ch, cw = rb - ra + 1, cb - ca + 1
    stride = cw + 1
    size = ch * stride
    r = rows - ra
    diff = np.bincount(r * stride + (c0 - ca), minlength=size) - np.bincount(r * stride + (c1 - ca) + 1, minlength=size)
    cover = np.cumsum(diff.reshape(ch, stride)[:, :cw], axis=1)
    mask[ra:rb + 1, ca:cb + 1] = cover > 0
    return mask


def amodal_mask(world_tris: np.ndarray, cam: Camera) -> AmodalResult:
    """The object's full silhouette inside the frame and whether it leaves the frame."""
    tris2d, clipped = project(world_tris, cam)
    mask = rasterize(tris2d, cam.width, cam.height)
    truncated = clipped
    if len(tris2d):
        pts = tris2d.reshape(-1, 2)
        truncated = truncated or bool(
            (pts[:, 0] < 0).any() or (pts[:, 0] > cam.width).any() or (pts[:, 1] < 0).any() or (pts[:, 1] > cam.height).any()
        )
    return _result(mask, truncated)


def _result(mask: np.ndarray, truncated: bool) -> AmodalResult:
    rows = np.flatnonzero(mask.any(1))
    if len(rows) == 0:
        return AmodalResult(mask, truncated, None)
    cols = np.flatnonzero(mask.any(0))
    return AmodalResult(mask, truncated, (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])))


def closed_surface(verts: np.ndarray, tris: np.ndarray) -> bool:
    """Whether the triangles form closed, consistently wound surfaces: every edge (between vertex
    positions: files split vertices along UV seams and hard edges) is run once in each direction,
    by two triangles.

    Then every pixel centre inside the silhouette is covered by a triangle of each winding (a ray
    that enters the surface also leaves it), so one winding's triangles rasterise to the same mask
    as all of them: half the work (``mesh_amodal_mask``). Open scans and non-manifold meshes keep
    every triangle.
    """
    if len(tris) == 0:
        return False
    _, welded = np.unique(verts, axis=0, return_inverse=True)
    t = welded.reshape(-1)[tris].astype(np.int64)
    n = int(t.max()) + 1
    a = np.concatenate([t[:, 0], t[:, 1], t[:, 2]])
    b = np.concatenate([t[:, 1], t[:, 2], t[:, 0]])
    forward = np.sort(a * n + b)
    if (a == b).any() or (np.diff(forward) == 0).any():  # a degenerate or twice-run edge
        return False
    return bool(np.array_equal(forward, np.sort(b * n + a)))


def mesh_amodal_mask(verts_local: np.ndarray, tris: np.ndarray, matrix_world: np.ndarray, cam: Camera,
                     closed: bool = False) -> AmodalResult:
    """``amodal_mask`` of a mesh under a world matrix, projecting each vertex once and, for a
    ``closed`` surface (``closed_surface``), rasterising one winding's triangles only; a mesh that
    reaches behind the near plane takes the general path (``amodal_mask``), which clips triangles."""
    v = verts_local @ matrix_world[:3, :3].T + matrix_world[:3, 3]
    cam_pts = v @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
    if len(tris) == 0 or not (cam_pts[:, 2] <= -cam.clip_start).all():
        return amodal_mask(v[tris], cam)
    tris2d = _to_pixels(cam_pts, cam)[tris]
    flat = tris2d.reshape(-1, 2)
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    truncated = bool(lo[0] < 0 or hi[0] > cam.width or lo[1] < 0 or hi[1] > cam.height)
    if closed:
        e1, e2 = tris2d[:, 1] - tris2d[:, 0], tris2d[:, 2] - tris2d[:, 0]
        area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        tris2d = tris2d[area2 >= 0]  # one winding, and the edge-on slivers (area 0) of both
    return _result(rasterize(tris2d, cam.width, cam.height), truncated)


def world_triangles(verts_local: np.ndarray, tris: np.ndarray, matrix_world: np.ndarray) -> np.ndarray:
    """(T,3,3) world-space triangles of a mesh under a 4x4 world matrix."""
    v = verts_local @ matrix_world[:3, :3].T + matrix_world[:3, 3]
    return v[tris]
