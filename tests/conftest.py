"""Shared test setup.

BLENDER_USER_RESOURCES is pointed at a throw-away folder before anything can import bpy, so no
test writes to the user's Blender configuration.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_USER_RESOURCES = tempfile.mkdtemp(prefix="instseg-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture()
def shapes_dataset(tmp_path: Path) -> Path:
    """A small drawn-shapes COCO dataset (8 images, 64x64); returns its annotations.json."""
    from tests.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path / "shapes", n_images=8, size=64, seed=0)
