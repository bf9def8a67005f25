"""Cycles settings and in-memory capture of the render passes (no files, no compositor).

The capture wraps ``cycles.CyclesRender.render`` and copies every pass of the full-frame
RenderResult into numpy right after Cycles finishes (approach A of the bpy 5.0 facts: the only
in-memory route in background mode, measured at < 1 ms of extraction). The Object Index pass is
written by Cycles from the first sample only, never blended, so it is an exact integer map; with
``filter_width = 0.01`` that sample goes through the pixel centre, which is what the amodal
rasteriser assumes too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from ...core import sensor
from ..datablocks import kept

log = logging.getLogger(__name__)

_CAPTURE: dict[str, np.ndarray] = {}
_INSTALLED = False

INDEX_PASS_NAMES = ("Object Index", "IndexOB")  # 5.0 name, 3.x/4.x name
DEPTH_PASS_NAMES = ("Depth", "Z")


def install_capture() -> None:
    """Wrap Cycles' render method once per process (survives read_factory_settings)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import cycles  # bundled add-on package; importable once bpy is imported

    original = cycles.CyclesRender.render
    if getattr(original, "_instseg_capture", False):
        _INSTALLED = True
        return

    def capturing_render(self, depsgraph):  # type: ignore[no-untyped-def]
        original(self, depsgraph)
        result = self.get_result()
        w, h = result.resolution_x, result.resolution_y
        _CAPTURE.clear()
        for layer in result.layers:
            for p in layer.passes:
                buf = np.empty(w * h * p.channels, np.float32)
                p.rect.foreach_get(buf)
                _CAPTURE[p.name] = np.flipud(buf.reshape(h, w, p.channels))  # bottom-up -> top-down

    capturing_render._instseg_capture = True  # type: ignore[attr-defined]
    cycles.CyclesRender.render = capturing_render
    _INSTALLED = True


def ensure_cycles_enabled() -> None:
    """Cycles is an add-on: a factory-reset or module-mode Blender may not have it enabled yet."""
    import addon_utils

    if "cycles" not in bpy.context.preferences.addons:
        addon_utils.enable("cycles", default_set=True)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send C-level stdout to stderr for a moment: Cycles' GPU probing prints warnings on stdout,
    which must stay clean for the JSON-lines protocol."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (embedded): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def choose_device(requested: str) -> str:
    """'CPU' or 'GPU': 'auto' takes a GPU when Cycles sees one (CUDA/OptiX/HIP/oneAPI/Metal)."""
    if requested == "cpu":
        return "CPU"
    with _stdout_to_stderr():
        return _probe_device(requested)


def _probe_device(requested: str) -> str:
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except KeyError:
        return "CPU"
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        prefs.get_devices()
        gpus = [d for d in prefs.devices if d.type == backend]
        if gpus:
            for d in prefs.devices:
                d.use = d.type == backend
            return "GPU"
    if requested == "gpu":
        log.warning("no GPU found for Cycles; rendering on the CPU")
    prefs.compute_device_type = "NONE"
    return "CPU"


@dataclass
class RenderSettings:
    width: int
    height: int
    samples: int
    masks_only: bool
    max_bounces: int
    depth: bool
    device: str = "CPU"
    threads: int = 0  # 0 = Cycles' automatic thread count
    seed: int = 0
    filter_width: float = 0.01  # px; 0.01 = pixel-centre rays (exact labels), 1.5 = Cycles' anti-aliasing default
    label_only: bool = False  # only the Object Index / Depth passes matter: shade everything with a black emission
    # a photo backplate: transparent film and the Shadow Catcher pass, composited over the photo afterwards
    backplate: bool = False
    # label renders keep the real materials so alpha holes let the rays through (transparency_labels "opaque")
    label_alpha: bool = False
    dof: bool = False  # the camera's depth of field (set up by scene/lens.py); never for label renders
    motion_blur: bool = False  # Cycles motion blur over the keyed motion (scene/lens.py); never for label renders
    shutter: float = 0.5  # frames, centred on the current frame


def _assign(owner: Any, **values: Any) -> None:
    """Set RNA properties, skipping those that already hold the value.

    Why: every assignment tags the scene for a depsgraph update even when nothing changes, and with
    persistent render data such a tag (the material override above all) makes Cycles sync every
    mesh again; the skip keeps a render's cost to what really changed.
    """
    for name, value in values.items():
        current = getattr(owner, name)
        if isinstance(value, float) and isinstance(current, float):
            if np.float32(current) == np.float32(value):  # RNA floats are float32
                continue
        elif current == value:
            continue
        setattr(owner, name, value)


def configure(s: RenderSettings, *, percentage: int = 100) -> None:
    """Apply the settings to the current scene. Called before every render so state never leaks.

    A masks-only dataset's renders keep their render data (``use_persistent_data``): Cycles keeps
    the synced meshes and their BVHs, so a scene that differs from the last one in object transforms
    costs only those (scene/meshes.py: every shape mesh keeps two users in a pool of parked
    objects). An RGB dataset's renders do not: they switch the label override on and off, which
    makes Cycles sync every mesh again anyway, and with bpy 5.0 a kept session rendered the same
    RGB image differently after other images.
    """
    ensure_cycles_enabled()
    install_capture()
    scene = bpy.context.scene
    r = scene.render
    _assign(r, engine="CYCLES", resolution_x=s.width, resolution_y=s.height, resolution_percentage=percentage,
            pixel_aspect_x=1.0, pixel_aspect_y=1.0, use_border=False,
            use_persistent_data=s.masks_only and not s.label_only, film_transparent=s.backplate)
    if s.threads > 0:
        _assign(r, threads_mode="FIXED", threads=s.threads)
    else:
        _assign(r, threads_mode="AUTO")
    c = scene.cycles
    bounces = 0 if s.masks_only else s.max_bounces
    # filter_width 0.01 for label renders: pixel-centre rays, as the amodal rasteriser assumes
    _assign(c, device=s.device, seed=s.seed & 0x7FFFFFFF, use_animated_seed=False, filter_width=s.filter_width,
            use_adaptive_sampling=False, use_denoising=False, sample_clamp_indirect=10.0,
            samples=1 if s.masks_only else s.samples, max_bounces=bounces, diffuse_bounces=min(bounces, 4),
            glossy_bounces=min(bounces, 4), transmission_bounces=min(bounces, 4), volume_bounces=0,
            # a ray that runs out of transparent bounces stops on the surface as if it were opaque (measured)
            transparent_max_bounces=16 if s.label_alpha and s.label_only else min(bounces, 8),
            caustics_reflective=False, caustics_refractive=False)
    vl = bpy.context.view_layer
    # a black emission override skips textures and light sampling: ~4x faster label renders, same ids
    override = label_material() if s.label_only and not s.label_alpha else None
    if vl.material_override != override:
        vl.material_override = override
    _assign(vl, pass_alpha_threshold=0.5)  # Index/Depth are written at the first surface with alpha >= this
    # the shutter is centred on the frame, so a render without blur shows the scene at the shutter's centre
    _assign(r, use_motion_blur=s.motion_blur, motion_blur_shutter=s.shutter, motion_blur_position="CENTER")
    camera: Any = scene.camera
    if camera is not None and camera.get("instseg_params") is not None:  # the generator's own camera only
        _assign(camera.data.dof, use_dof=s.dof)
    _assign(vl, use_pass_object_index=True, use_pass_z=s.depth, use_pass_combined=True)
    _assign(vl.cycles, use_pass_shadow_catcher=s.backplate)
    _assign(scene.view_settings, view_transform="Standard", look="None", exposure=0.0, gamma=1.0)


_LABEL_MATERIAL: list[bpy.types.Material] = []


def label_material() -> bpy.types.Material:
    """A zero-strength emission material (fake user, kept across scenes, rebuilt after a factory reset)."""
    kept_mat = kept(_LABEL_MATERIAL, bpy.data.materials)
    if kept_mat is not None:
        return kept_mat
    mat = bpy.data.materials.new("instseg_label_override")
    if mat.node_tree is None:  # Blender < 5.0
        mat.use_nodes = True
    nt = mat.node_tree
    for node in list(nt.nodes):
        if node.type != "OUTPUT_MATERIAL":
            nt.nodes.remove(node)
    out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
    emission = nt.nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 0.0
    nt.links.new(emission.outputs[0], out.inputs["Surface"])
    mat.use_fake_user = True
    _LABEL_MATERIAL.append(mat)
    return mat


def render() -> dict[str, np.ndarray]:
    """Render the current scene with Cycles and return the captured passes (top-down HxWxC float32)."""
    install_capture()
    _CAPTURE.clear()
    bpy.ops.render.render(write_still=False)
    if not _CAPTURE:
        raise RuntimeError("Cycles produced no render result (is the scene camera set?)")
    return dict(_CAPTURE)


def _find(passes: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray | None:
    for name in names:
        if name in passes:
            return passes[name]
    return None


def index_map(passes: dict[str, np.ndarray]) -> np.ndarray:
    """The Object Index pass as uint16 HxW (0 = background)."""
    p = _find(passes, INDEX_PASS_NAMES)
    if p is None:
        raise RuntimeError(f"no Object Index pass in the render result (passes: {sorted(passes)})")
    return np.rint(p[..., 0]).astype(np.uint16)


def depth_map(passes: dict[str, np.ndarray]) -> np.ndarray | None:
    """Cycles' depth pass (distance along the camera axis, metres); background (1e10) becomes 0."""
    p = _find(passes, DEPTH_PASS_NAMES)
    if p is None:
        return None
    d = np.ascontiguousarray(p[..., 0], dtype=np.float32)
    d[~np.isfinite(d) | (d >= 1e9)] = 0.0
    return d


def rgb8(passes: dict[str, np.ndarray], auto_exposure: bool = True) -> np.ndarray:
    """Combined pass (linear scene-referred) -> 8-bit sRGB HxWx3 (``core.sensor.develop`` without effects).

    Random lights sometimes blow a scene out; ``auto_exposure`` scales the linear image down (never
    up) so the 97th percentile of its brightest channel is at most 0.95: a deterministic function
    of the pixels.
    """
    return sensor.develop(passes["Combined"], auto_exposure=auto_exposure)
