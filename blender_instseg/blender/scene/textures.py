"""Image texture sets on the ground, the distractors and some objects; a jitter for the assets' own materials.

Every draw comes from the scene's own ``textures`` stream in a fixed order and number (ground: 4,
then 7 per object, then 7 per distractor), whatever is applied, so textures never change another
draw and never the geometry or the labels.

A slot linked to the object holds the generator's palette material (``builder`` links it so); a
slot linked to the mesh holds an asset's own material, which is never replaced by a texture, only
copied with a hue / value / roughness jitter when ``textures.asset_*_jitter`` asks for one.
Colour and roughness maps are box-projected in object space (no UVs needed); the ground, a plane
with a UV map in metres (``meshes.ground_shape``), also gets the set's OpenGL normal map.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...core.genconfig import TexturesConfig
from ...generator import media
from . import images

GROUND_DRAWS = 4
OBJECT_DRAWS = 7


def apply(cfg: TexturesConfig, rng: np.random.Generator, ground: bpy.types.Object | None,
          objects: list[bpy.types.Object], distractors: list[bpy.types.Object]) -> dict[str, Any]:
    """Texture and jitter this scene's materials; returns a summary for the record's scene params."""
    sets = media.texture_sets(cfg.textures_dir) if cfg.textures_dir else ()
    root = Path(cfg.textures_dir)
    used: list[str] = []
    d = rng.uniform(size=GROUND_DRAWS)
    if ground is not None and sets and d[0] < cfg.ground_probability:
        tex = sets[_pick(d[1], len(sets))]
        mat = _texture_material("ground_tex", tex, root, _lerp(cfg.ground_tile_size, d[2]), d[3], on_ground=True)
        ground.material_slots[0].link = "OBJECT"
        ground.material_slots[0].material = mat
        used.append(tex.name)
    jittered = 0
    for kind, objs, chance in (("obj", objects, cfg.object_probability), ("distractor", distractors,
                                                                           cfg.distractor_probability)):
        for k, obj in enumerate(objs, start=1):
            d = rng.uniform(size=OBJECT_DRAWS)
            palette = [s for s in obj.material_slots if s.link == "OBJECT"]
            if palette and sets and d[0] < chance:
                tex = sets[_pick(d[1], len(sets))]
                mat = _texture_material(f"{kind}_tex_{k:04d}", tex, root, _lerp(cfg.tile_size, d[2]), d[3], on_ground=False)
                for slot in palette:
                    slot.material = mat
                used.append(tex.name)
            if _jitters(cfg) and not palette:
                _jitter_own_materials(obj, cfg, d[4:7], f"{kind}_jit_{k:04d}")
                jittered += 1
    summary: dict[str, Any] = {}
    if used:
        summary["textures"] = used
    if jittered:
        summary["jittered"] = jittered
    return summary


def _pick(u: float, n: int) -> int:
    return min(int(u * n), n - 1)


def _lerp(lo_hi: list[float], u: float) -> float:
    return float(lo_hi[0] + u * (lo_hi[1] - lo_hi[0]))


def _jitters(cfg: TexturesConfig) -> bool:
    return cfg.asset_hue_jitter > 0 or cfg.asset_value_jitter > 0 or cfg.asset_roughness_jitter > 0


def _new_material(name: str) -> tuple[bpy.types.Material, Any, Any]:
    mat = bpy.data.materials.new(name)
    nt: Any = mat.node_tree
    if nt is None:  # Blender < 5.0 creates materials without nodes
        mat.use_nodes = True
        nt = mat.node_tree
    bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
    return mat, nt, bsdf


def _texture_material(name: str, tex: media.TextureSet, root: Path, tile: float, turn: float,
                      on_ground: bool) -> bpy.types.Material:
    """Principled BSDF fed by the set's maps, repeated every ``tile`` units and turned by ``turn`` of a circle."""
    mat, nt, bsdf = _new_material(name)
    bsdf.inputs["Metallic"].default_value = 0.0
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping = nt.nodes.new("ShaderNodeMapping")
    mapping.inputs["Scale"].default_value = (1.0 / tile, 1.0 / tile, 1.0 / tile)
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, 2.0 * math.pi * float(turn))
    nt.links.new(coord.outputs["UV" if on_ground else "Object"], mapping.inputs["Vector"])

    def image_node(rel: str, non_color: bool) -> Any:
        node = nt.nodes.new("ShaderNodeTexImage")
        node.image = images.load(root / rel, non_color=non_color)
        if not on_ground:  # no UVs on the objects: project along the three axes, blended at the seams
            node.projection = "BOX"
            node.projection_blend = 0.25
        nt.links.new(mapping.outputs["Vector"], node.inputs["Vector"])
        return node

    nt.links.new(image_node(tex.colour, False).outputs["Color"], bsdf.inputs["Base Color"])
    if tex.roughness:
        nt.links.new(image_node(tex.roughness, True).outputs["Color"], bsdf.inputs["Roughness"])
    if tex.normal and on_ground:
        normal_map = nt.nodes.new("ShaderNodeNormalMap")
        normal_map.uv_map = "UVMap"
        nt.links.new(image_node(tex.normal, True).outputs["Color"], normal_map.inputs["Color"])
        nt.links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
    return mat


def _jitter_own_materials(obj: bpy.types.Object, cfg: TexturesConfig, d: np.ndarray, name: str) -> None:
    """Per-object copies of the asset's own materials with hue, value and roughness nudged by ``d`` (3 uniforms)."""
    dh = cfg.asset_hue_jitter * (2.0 * float(d[0]) - 1.0)
    dv = cfg.asset_value_jitter * (2.0 * float(d[1]) - 1.0)
    dr = cfg.asset_roughness_jitter * (2.0 * float(d[2]) - 1.0)
    copies: dict[str, bpy.types.Material] = {}
    for i, slot in enumerate(obj.material_slots):
        source = slot.material
        if source is None or source.node_tree is None:
            continue
        mat = copies.get(source.name)
        if mat is None:
            mat = source.copy()
            mat.name = f"{name}_{i}"
            mat.use_fake_user = False  # removed with the scene, unlike the asset's own material
            _jitter_nodes(mat.node_tree, dh, dv, dr)
            copies[source.name] = mat
        slot.link = "OBJECT"
        slot.material = mat


def _feed(nt: Any, socket: Any, into: Any) -> None:
    """Route what fed ``socket`` (its link, or its constant) into ``into``."""
    if socket.is_linked:
        nt.links.new(socket.links[0].from_socket, into)
    else:
        into.default_value = socket.default_value


def _jitter_nodes(nt: Any, dh: float, dv: float, dr: float) -> None:
    for bsdf in [n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"]:
        base = bsdf.inputs["Base Color"]
        hsv = nt.nodes.new("ShaderNodeHueSaturation")
        hsv.inputs["Hue"].default_value = (0.5 + dh) % 1.0  # 0.5 = no shift
        hsv.inputs["Value"].default_value = max(0.0, 1.0 + dv)
        _feed(nt, base, hsv.inputs["Color"])
        nt.links.new(hsv.outputs["Color"], base)
        rough = bsdf.inputs["Roughness"]
        add = nt.nodes.new("ShaderNodeMath")
        add.operation = "ADD"
        add.use_clamp = True
        add.inputs[1].default_value = dr
        _feed(nt, rough, add.inputs[0])
        nt.links.new(add.outputs[0], rough)
