"""Depth of field and motion blur of one image's RGB render (``LensConfig``); labels never see them.

The labels come from a render without DOF and without motion blur (``cycles.configure`` turns both
off unless the settings ask, and label renders never ask), at the current frame. Motion is keyed
at frame - 1, frame and frame + 1 with linear interpolation, and Cycles' shutter is centred on the
frame, so the sharp label render shows exactly the scene at the shutter's centre: each object's
key at the frame is its settled position, unchanged.

All draws come from the image's "lens" stream, in a fixed number per image and object whatever is
switched on, and happen after the scene is settled and its labels are known, so the layout, the
materials and the labels are the same with the effects on or off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np
from mathutils import Vector

from ...core.genconfig import LensConfig


@dataclass(frozen=True)
class LensPlan:
    """Which effects one image gets (drawn before any render: the render settings depend on them)."""

    dof: bool = False
    fstop: float = 0.0
    motion_blur: bool = False
    shutter: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: LensConfig) -> "LensPlan":
        """Always 4 draws."""
        u = rng.uniform(size=4)
        dof = bool(u[0] < cfg.dof_probability)
        blur = bool(u[2] < cfg.motion_blur_probability)
        fstop = cfg.fstop[0] + (cfg.fstop[1] - cfg.fstop[0]) * float(u[1])
        shutter = cfg.shutter[0] + (cfg.shutter[1] - cfg.shutter[0]) * float(u[3])
        return cls(dof, fstop if dof else 0.0, blur, shutter if blur else 0.0)

    @property
    def active(self) -> bool:
        return self.dof or self.motion_blur


def apply(plan: LensPlan, cfg: LensConfig, built: Any, visible_ids: list[int],
          rng: np.random.Generator) -> dict[str, Any]:
    """Set up the camera's DOF and key the motion of ``plan`` on the built scene; returns the record's
    ``scene.lens`` summary (empty when nothing is on).

    ``visible_ids`` are the instance ids in the label render: DOF focuses on one of them (on the
    camera's look-at point when none is visible). Draws: 1 for the focus, 4 for the camera, 2 per object.
    """
    focus_draw = float(rng.uniform())
    cam_dir = rng.normal(size=3)
    cam_speed = float(rng.uniform(cfg.camera_motion[0], cfg.camera_motion[1]))
    obj_draws = rng.uniform(size=(len(built.objects), 2))
    summary: dict[str, Any] = {}
    camera = built.camera
    if plan.dof:
        dof = camera.data.dof
        dof.aperture_fstop = plan.fstop
        ids = sorted(visible_ids)
        by_id = built.by_id()
        if ids:
            target = by_id[ids[min(int(focus_draw * len(ids)), len(ids) - 1)]]
            dof.focus_object = target.obj
            summary["dof"] = {"fstop": round(plan.fstop, 4), "focus_instance": target.instance_id}
        else:
            dof.focus_distance = float(camera["instseg_params"]["distance"])
            summary["dof"] = {"fstop": round(plan.fstop, 4), "focus_distance": round(dof.focus_distance, 4)}
    if plan.motion_blur:
        norm = float(np.linalg.norm(cam_dir))
        step = Vector(tuple(float(v) * cam_speed / norm for v in cam_dir)) if norm > 0 else Vector()
        _key_linear_motion(camera, step)
        for so, (angle, speed) in zip(built.objects, obj_draws):
            metres = cfg.object_motion[0] + (cfg.object_motion[1] - cfg.object_motion[0]) * float(speed)
            a = 2.0 * math.pi * float(angle)
            _key_linear_motion(so.obj, Vector((metres * math.cos(a), metres * math.sin(a), 0.0)))
        bpy.context.view_layer.update()
        summary["motion_blur"] = {"shutter": round(plan.shutter, 4), "camera_motion": round(cam_speed, 4)}
    return summary


def _key_linear_motion(obj: bpy.types.Object, step: Vector) -> None:
    """Key ``obj`` moving by ``step`` per frame through its current location at the current frame."""
    scene = bpy.context.scene
    frame = scene.frame_current
    here = obj.location.copy()
    edit = bpy.context.preferences.edit
    before = edit.keyframe_new_interpolation_type
    edit.keyframe_new_interpolation_type = "LINEAR"  # constant speed across the shutter
    try:
        for df in (-1, 1, 0):  # the frame's own key last: its value is exactly the settled location
            obj.location = here + step * df
            obj.keyframe_insert("location", frame=frame + df)
    finally:
        edit.keyframe_new_interpolation_type = before
