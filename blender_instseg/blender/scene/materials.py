"""Random Principled BSDF materials, lights and world backgrounds.

Every random value is drawn before any datablock is made, from the caller's generator, so the
draws (and therefore every later draw from the same stream) do not depend on whether the nodes
are actually built; masks-only mode skips building them and still gets the same geometry.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np
from mathutils import Vector

from ...core.genconfig import LightConfig, MaterialConfig, WorldConfig
from ..datablocks import kept


def _u(rng: np.random.Generator, lo_hi: list[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _hsv(rng: np.random.Generator, sat: list[float], val: list[float]) -> tuple[float, float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(float(rng.uniform()), _u(rng, sat), _u(rng, val))
    return (r, g, b, 1.0)


def _clip(value: float, lo_hi: list[float]) -> float:
    return float(min(max(value, lo_hi[0]), lo_hi[1]))


def _nudge_colour(colour: tuple[float, float, float, float], d: np.ndarray, hue: float, rel: float,
                  sat: list[float], val: list[float]) -> tuple[float, float, float, float]:
    """Shift hue by ``hue * d[0]`` and scale saturation/value by ``1 + rel * d[1:3]``, kept in the config's ranges."""
    h, s, v = colorsys.rgb_to_hsv(colour[0], colour[1], colour[2])
    s2 = _clip(s * (1.0 + rel * float(d[1])), sat) if s > 0 else s  # a grey stays grey (no hue to keep)
    r, g, b = colorsys.hsv_to_rgb((h + hue * float(d[0])) % 1.0, s2, _clip(v * (1.0 + rel * float(d[2])), val))
    return (r, g, b, colour[3])


@dataclass
class MaterialSpec:
    colour: tuple[float, float, float, float]
    colour2: tuple[float, float, float, float]
    roughness: float
    metallic: float
    texture: str  # "", "noise" or "voronoi"
    texture_scale: float

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: MaterialConfig) -> "MaterialSpec":
        colour = _hsv(rng, cfg.saturation, cfg.value)
        colour2 = _hsv(rng, cfg.saturation, cfg.value)
        roughness = _u(rng, cfg.roughness)
        metallic = 1.0 if rng.uniform() < cfg.metallic_probability else 0.0
        tex_draw = float(rng.uniform())
        kind = float(rng.uniform())
        scale = float(rng.uniform(2.0, 12.0))
        texture = ("noise" if kind < 0.5 else "voronoi") if tex_draw < cfg.texture_probability else ""
        return cls(colour, colour2, roughness, metallic, texture, scale)

    def perturbed(self, rng: np.random.Generator, cfg: MaterialConfig, hue: float, rel: float,
                  roughness: float) -> "MaterialSpec":
        """A near copy for a scene variant: same texture kind, nudged colours and roughness (always 7 draws)."""
        d = rng.uniform(-1.0, 1.0, size=7)
        return MaterialSpec(_nudge_colour(self.colour, d[0:3], hue, rel, cfg.saturation, cfg.value),
                            _nudge_colour(self.colour2, d[3:6], hue, rel, cfg.saturation, cfg.value),
                            _clip(self.roughness + roughness * float(d[6]), cfg.roughness), self.metallic,
                            self.texture, self.texture_scale)

    def build(self, name: str) -> bpy.types.Material:
        mat = bpy.data.materials.new(name)
        nt = mat.node_tree
        if nt is None:  # Blender < 5.0 creates materials without nodes
            mat.use_nodes = True
            nt = mat.node_tree
        bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Base Color"].default_value = self.colour
        bsdf.inputs["Roughness"].default_value = self.roughness
        bsdf.inputs["Metallic"].default_value = self.metallic
        if self.texture:
            tex = nt.nodes.new("ShaderNodeTexNoise" if self.texture == "noise" else "ShaderNodeTexVoronoi")
            tex.inputs["Scale"].default_value = self.texture_scale
            ramp = nt.nodes.new("ShaderNodeValToRGB")
            ramp.color_ramp.elements[0].color = self.colour
            ramp.color_ramp.elements[1].color = self.colour2
            nt.links.new(tex.outputs[0] if self.texture == "noise" else tex.outputs["Distance"], ramp.inputs["Fac"])
            nt.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
        return mat


@dataclass
class LightSpec:
    kind: str
    location: tuple[float, float, float]
    energy: float
    colour: tuple[float, float, float]
    size: float

    def build(self, name: str, target: Vector) -> bpy.types.Object:
        data: Any = bpy.data.lights.new(name, self.kind)  # type: ignore[arg-type]
        data.energy = self.energy
        data.color = self.colour
        if self.kind == "AREA":
            data.size = self.size
        elif self.kind == "SPOT":
            data.spot_size = math.radians(60.0)
        elif self.kind == "POINT":
            data.shadow_soft_size = self.size * 0.2
        obj = bpy.data.objects.new(name, data)
        obj.location = self.location
        direction = target - Vector(self.location)
        obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
        return obj

    def perturbed(self, rng: np.random.Generator, azimuth_deg: float, energy_rel: float) -> "LightSpec":
        """The same light swung about the vertical axis and dimmed or brightened (always 2 draws)."""
        d = rng.uniform(-1.0, 1.0, size=2)
        a = math.radians(azimuth_deg) * float(d[0])
        x, y, z = self.location
        loc = (x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a), z)
        return LightSpec(self.kind, loc, self.energy * (1.0 + energy_rel * float(d[1])), self.colour, self.size)


def sample_lights(rng: np.random.Generator, cfg: LightConfig) -> list[LightSpec]:
    count = int(rng.integers(cfg.min_count, cfg.max_count + 1))
    lights = []
    for _ in range(count):
        kind = str(cfg.types[int(rng.integers(0, len(cfg.types)))])
        az = float(rng.uniform(0, 2 * math.pi))
        el = float(rng.uniform(math.radians(25), math.radians(80)))
        dist = float(rng.uniform(4.0, 9.0))
        loc = (dist * math.cos(el) * math.cos(az), dist * math.cos(el) * math.sin(az), dist * math.sin(el))
        energy = _u(rng, cfg.sun_strength) if kind == "SUN" else _u(rng, cfg.energy)
        r, g, b = colorsys.hsv_to_rgb(float(rng.uniform()), _u(rng, cfg.saturation), 1.0)
        size = float(rng.uniform(0.5, 3.0))
        lights.append(LightSpec(kind, loc, energy, (r, g, b), size))
    return lights


@dataclass
class WorldSpec:
    gradient: bool
    top: tuple[float, float, float, float]
    bottom: tuple[float, float, float, float]
    strength: float
    ground: MaterialSpec

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: WorldConfig, mat_cfg: MaterialConfig) -> "WorldSpec":
        gradient = bool(rng.uniform() < cfg.gradient_probability)
        top = _hsv(rng, [0.0, 0.6], [0.3, 1.0])
        bottom = _hsv(rng, [0.0, 0.6], [0.05, 0.6])
        strength = _u(rng, cfg.strength)
        ground = MaterialSpec.sample(rng, mat_cfg)
        ground.metallic = 0.0
        return cls(gradient, top, bottom, strength, ground)

    def perturbed(self, rng: np.random.Generator, cfg: WorldConfig, mat_cfg: MaterialConfig, strength_rel: float,
                  hue: float, rel: float, roughness: float) -> "WorldSpec":
        """Same sky, a little brighter or darker, and a nudged ground material."""
        strength = _clip(self.strength * (1.0 + strength_rel * float(rng.uniform(-1.0, 1.0))), cfg.strength)
        return WorldSpec(self.gradient, self.top, self.bottom, strength,
                         self.ground.perturbed(rng, mat_cfg, hue, rel, roughness))

    def build(self, name: str) -> bpy.types.World:
        world = bpy.data.worlds.new(name)
        nt: Any = world.node_tree
        if nt is None:
            world.use_nodes = True
            nt = world.node_tree
        # a smooth background gains nothing from importance sampling, whose map costs ~0.5 s per render
        world.cycles.sampling_method = "NONE"
        bg = next(n for n in nt.nodes if n.type == "BACKGROUND")
        bg.inputs["Strength"].default_value = self.strength
        bg.inputs["Color"].default_value = self.top
        if self.gradient:
            coord = nt.nodes.new("ShaderNodeTexCoord")
            sep = nt.nodes.new("ShaderNodeSeparateXYZ")
            ramp = nt.nodes.new("ShaderNodeValToRGB")
            ramp.color_ramp.elements[0].color = self.bottom
            ramp.color_ramp.elements[1].color = self.top
            nt.links.new(coord.outputs["Generated"], sep.inputs[0])
            nt.links.new(sep.outputs["Z"], ramp.inputs["Fac"])
            nt.links.new(ramp.outputs["Color"], bg.inputs["Color"])
        return world


_CLAY_WORLD: list[bpy.types.World] = []


def clay_world() -> bpy.types.World:
    """A constant grey world that lights the default grey material: the cheap image of masks-only mode.

    One world for every image (fake user, rebuilt after a factory reset): with persistent render
    data a new world makes Cycles update every mesh's shader data, the costliest part of a masks-only
    image's sync with dense assets."""
    kept_world = kept(_CLAY_WORLD, bpy.data.worlds)
    if kept_world is not None:
        return kept_world
    world = bpy.data.worlds.new("clay")
    world.cycles.sampling_method = "NONE"
    nt: Any = world.node_tree
    if nt is None:
        world.use_nodes = True
        nt = world.node_tree
    bg = next(n for n in nt.nodes if n.type == "BACKGROUND")
    bg.inputs["Color"].default_value = (0.8, 0.8, 0.8, 1.0)
    bg.inputs["Strength"].default_value = 1.0
    world.use_fake_user = True
    _CLAY_WORLD.append(world)
    return world
