"""Glass and alpha-cut materials (``materials.glass_probability`` / ``alpha_cut_probability``) and
what they mean for the labels (``materials.transparency_labels``).

How Cycles writes the Object Index (and Depth) pass, measured on bpy 5.0 and 5.3: at the first
surface whose alpha is >= ``view_layer.pass_alpha_threshold`` (0.5 here). A glass surface
(Transmission 1) has alpha 1: the ray refracts, it is not let through, so glass is written at its
surface, with real materials as with the label override; a glass object is labelled by its
footprint under both policies. Alpha lets a ray through only while transparent bounces remain (a
ray out of them stops on the surface as if it were opaque), and a partial alpha is let through
at random per pixel; so the alpha-cut material clips its alpha to exactly 0 or 1, and a label render
that honours it keeps the real materials and has transparent bounces (``cycles.RenderSettings.label_alpha``).

* ``footprint``: labels are rendered with the opaque label override: every pixel of the object's
  geometry, holes included (the holes show what is behind in the RGB).
* ``opaque``: labels keep the alpha: holes are labelled with what is seen through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import bpy
import numpy as np

from ...core.genconfig import MaterialConfig


@dataclass(frozen=True)
class TransparencySpec:
    kind: str  # "", "glass" or "alpha_cut"
    ior: float
    roughness: float
    cut_scale: float
    cut_level: float  # alpha is 1 where the noise is below this level, else 0

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: MaterialConfig) -> "TransparencySpec":
        """Always 5 draws, whatever the kind, so the stream stays aligned object by object."""
        u = rng.uniform(size=5)
        kind = "glass" if u[0] < cfg.glass_probability else ("alpha_cut" if u[1] < cfg.alpha_cut_probability else "")
        return cls(kind, 1.4 + 0.15 * float(u[2]), 0.08 * float(u[2]), 3.0 + 5.0 * float(u[3]),
                   0.45 + 0.1 * float(u[4]))

    def dress(self, mat: bpy.types.Material) -> bpy.types.Material:
        """Make the palette material ``mat`` glass or alpha-cut (in place); returns it."""
        nt = mat.node_tree
        bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
        if self.kind == "glass":
            bsdf.inputs["Transmission Weight"].default_value = 1.0
            bsdf.inputs["Metallic"].default_value = 0.0
            bsdf.inputs["Roughness"].default_value = self.roughness
            bsdf.inputs["IOR"].default_value = self.ior
        elif self.kind == "alpha_cut":
            noise = nt.nodes.new("ShaderNodeTexNoise")
            noise.inputs["Scale"].default_value = self.cut_scale
            clip = nt.nodes.new("ShaderNodeMath")
            clip.operation = "LESS_THAN"  # 1 below the level, 0 above: alpha is exactly 0 or 1
            clip.inputs[1].default_value = self.cut_level
            nt.links.new(noise.outputs["Fac"], clip.inputs[0])
            nt.links.new(clip.outputs["Value"], bsdf.inputs["Alpha"])
        return mat


# node types that let a camera ray through (or cut a hole) wherever they are mixed in
_SEE_THROUGH_NODES = ("BSDF_TRANSPARENT", "HOLDOUT")
# inputs that make a shader partly transparent, and their opaque value
_OPACITY_INPUTS = (("Alpha", 1.0), ("Transparency", 0.0))


def _tree_lets_rays_through(tree: "bpy.types.NodeTree", seen: set[str]) -> str:
    """Why a shader node tree can let a camera ray through its surface ('' when it cannot)."""
    if tree.name in seen:
        return ""
    seen.add(tree.name)
    for node in tree.nodes:
        if node.type in _SEE_THROUGH_NODES:
            return f"a {node.bl_label} node"
        for name, opaque in _OPACITY_INPUTS:
            socket = node.inputs.get(name) if node.type != "GROUP_INPUT" else None
            if socket is not None and getattr(socket, "type", "") == "VALUE" and \
                    (socket.is_linked or abs(float(socket.default_value) - opaque) > 1e-6):
                return f"{node.bl_label} {name}"
        group_tree = getattr(node, "node_tree", None) if node.type == "GROUP" else None
        if group_tree is not None:
            why = _tree_lets_rays_through(group_tree, seen)
            if why:
                return why
    return ""


def label_override_blocker(materials: "Iterable[bpy.types.Material]") -> str:
    """'' when the opaque label override renders the same ids as these materials, else why not.

    The override replaces every surface by an opaque one; it is exact only where each material is
    opaque and leaves the geometry as it is. So a material that can let a ray through (Transparent
    BSDF, Holdout, an Alpha below 1 or driven by a link), has no surface shader (a volume only), or
    moves its surface by true displacement keeps the real materials in the label render.
    """
    for mat in materials:
        tree = getattr(mat, "node_tree", None)
        if tree is None or (bpy.app.version < (5, 0, 0) and not mat.use_nodes):
            continue  # a plain, opaque surface
        outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output]
        if not outputs or not outputs[0].inputs["Surface"].is_linked:
            return f"material {mat.name!r} has no surface shader"
        if outputs[0].inputs["Displacement"].is_linked and \
                getattr(mat, "displacement_method", "BUMP") in ("DISPLACEMENT", "BOTH"):
            return f"material {mat.name!r} displaces its surface"
        why = _tree_lets_rays_through(tree, set())
        if why:
            return f"material {mat.name!r} can be see-through ({why})"
    return ""
