"""The depth files a dataset holds (depth/NNNNNN.exr), read back from disk: they are the render's
depth pass, value for value, and agree with the id map (objects in front of the ground; no surface,
no depth).

Read with OpenCV (as the data set's users do) and with Blender's own EXR reader (a second decoder);
the camera looks straight down, so the ground's depth is known from the record's camera.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"  # before cv2 reads its first EXR (it checks lazily)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

TOP_DOWN = {"elevation": [89.999, 89.999], "distance": [4.0, 4.0], "jitter": 0.0, "fit_objects": False}


def _blender_read(path: Path) -> np.ndarray:
    """The EXR through bpy.data.images (RGBA floats, rows bottom-up) as an H x W array of its first channel."""
    img = bpy.data.images.load(str(path))
    try:
        w, h = img.size
        px = np.array(img.pixels[:], dtype=np.float32).reshape(h, w, img.channels)
        assert img.is_float and (px[..., 0] == px[..., 1]).all() and (px[..., 0] == px[..., 2]).all()
        return np.flipud(px[..., 0])
    finally:
        bpy.data.images.remove(img)


@pytest.mark.parametrize("ground", [True, False])
def test_depth_files_hold_the_depth_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ground: bool) -> None:
    from blender_instseg.blender.generate import main as generate
    from blender_instseg.blender.render import cycles as cy

    passes: list[np.ndarray] = []
    depth_map = cy.depth_map

    def recording(labels):  # type: ignore[no-untyped-def]
        d = depth_map(labels)
        assert d is not None, "no depth pass in the render"
        passes.append(d.copy())
        return d

    monkeypatch.setattr(cy, "depth_map", recording)
    config = tmp_path / "top_down.json"
    config.write_text(json.dumps({"camera": TOP_DOWN, "world": {"ground": ground}}))
    ds = tmp_path / "ds"
    assert generate(["--out", str(ds), "--num-images", "2", "--seed", "5", "--resolution", "64", "--masks-only",
                     "--min-objects", "3", "--max-objects", "5", "--no-preview", "--progress", "none",
                     "--config", str(config)]) == 0
    assert len(passes) == 2
    for index, depth_pass in enumerate(passes):
        rec = json.loads((ds / "records" / f"{index:06d}.json").read_text())
        assert rec["depth_file"] == f"depth/{index:06d}.exr"
        path = ds / rec["depth_file"]
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert depth is not None and depth.dtype == np.float32 and depth.shape == (64, 64)
        np.testing.assert_array_equal(depth, depth_pass)  # the pass itself: not rounded, scaled or flipped
        np.testing.assert_array_equal(_blender_read(path), depth)

        ids = cv2.imread(str(ds / rec["mask_file"]), cv2.IMREAD_UNCHANGED)
        background, objects = depth[ids == 0], depth[ids > 0]
        assert background.size and objects.size
        assert objects.min() > 0.0  # every object pixel is a surface at some distance
        if ground:
            # straight down from the look-at point's height plus the camera distance onto the ground (z = 0)
            cam = rec["scene"]["camera"]
            np.testing.assert_allclose(background, cam["distance"] + cam["target"][2], atol=2e-3)
            assert objects.max() < background.min()  # the objects stand on it, nearer to the camera
        else:
            assert (background == 0.0).all()  # nothing hit: depth 0
