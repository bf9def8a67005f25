"""The exactness check of one-object scenes: the amodal mask equals Cycles' Object Index pass."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_one_object_mask_is_exact(built: Any, width: int, height: int) -> None:
    """Render ``built`` (one object, id 1, fully in view) with label settings and compare its Object
    Index pixels with the amodal rasteriser's mask of the same mesh, pixel for pixel."""
    from blender_instseg.blender.render import annotate
    from blender_instseg.blender.render import cycles as cy

    cy.configure(cy.RenderSettings(width, height, 1, True, 0, False))
    ids = cy.index_map(cy.render())
    stack, _ = annotate.amodal_masks(built, width, height)
    visible = ids == 1
    assert visible.sum() > 20
    assert np.array_equal(stack[0], visible)
