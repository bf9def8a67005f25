"""HDRI worlds: one of the user's equirectangular images lights the scene and is seen behind it.

Which image, its turn about the vertical axis and its strength are drawn from the scene's own
``hdri`` stream (four draws, whatever the outcome), so an HDRI never changes another draw: the
geometry, and with it the labels, stay what the seed gave without HDRIs. Images that get no HDRI
keep the gradient or plain world of ``materials.WorldSpec``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...core.genconfig import WorldConfig
from ...generator import media
from . import images


@dataclass(frozen=True)
class HdriSpec:
    file: str  # relative to world.hdri_dir
    rotation_deg: float
    strength: float


def sample_hdri(rng: np.random.Generator, cfg: WorldConfig) -> HdriSpec | None:
    """This image's HDRI, or None (no folder, or the draw chose the gradient / plain world)."""
    use, pick, turn, strength = (float(v) for v in rng.uniform(size=4))
    if not cfg.hdri_dir or use >= cfg.hdri_probability:
        return None
    files = media.hdri_files(cfg.hdri_dir)
    if not files:
        return None
    lo, hi = cfg.hdri_rotation
    s_lo, s_hi = cfg.hdri_strength
    return HdriSpec(files[min(int(pick * len(files)), len(files) - 1)], lo + turn * (hi - lo),
                    s_lo + strength * (s_hi - s_lo))


def build_hdri_world(spec: HdriSpec, folder: str, name: str = "world") -> bpy.types.World:
    """A world of Environment Texture -> Background, turned by ``spec.rotation_deg`` about z."""
    world = bpy.data.worlds.new(name)
    nt: Any = world.node_tree
    if nt is None:  # Blender < 5.0 creates worlds without nodes
        world.use_nodes = True
        nt = world.node_tree
    # importance sampling: an HDRI's sun and windows are most of its light. A fixed 512 px map:
    # "AUTOMATIC" sizes it from the image and costs seconds per render, this ~0.05 s
    world.cycles.sampling_method = "MANUAL"
    world.cycles.sample_map_resolution = 512
    bg = next(n for n in nt.nodes if n.type == "BACKGROUND")
    bg.inputs["Strength"].default_value = spec.strength
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping = nt.nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(spec.rotation_deg))
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    env.image = images.load(Path(folder) / spec.file)
    nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    return world
