"""Fixtures for tests that drive the add-on inside the real bpy module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def addon():
    """The add-on enabled from the checkout (the repo root is on sys.path), disabled afterwards."""
    import bpy  # noqa: F401  (bpy puts Blender's scripts/modules, addon_utils among them, on sys.path)
    import addon_utils

    assert addon_utils.enable("blender_instseg", default_set=True) is not None
    yield
    addon_utils.disable("blender_instseg", default_set=True)


@pytest.fixture
def fresh_blender_each_test():
    """Factory settings before and after the test: no datablock of one test reaches the next."""
    from blender_instseg.blender.scene import builder

    builder.reset_blender()
    yield
    builder.reset_blender()
