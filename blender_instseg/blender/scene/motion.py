"""Motion of one procedural scene over a sequence's frames (``SequenceConfig``, ``--frames N``).

A sequence is one built scene seen at times ``t = frame / fps``. Frame 0 is the scene as built,
settled and checked for visibility (its *rest pose*); every frame's pose is computed from the rest
pose and the frame number alone, never from the previous frame, so any frame can be rendered first
(``--only-index``, a resume after a kill, a worker) and comes out the same.

- objects glide along the ground at a constant velocity and turn about the vertical axis at a
  constant rate; both keep their lowest point at its height, so nothing sinks into the ground;
- the camera orbits its look-at point about the vertical axis and dollies along its view axis,
  always aimed at the look-at point;
- with ``sequence.physics = "falling"`` the objects that fall follow the rigid-body simulation
  recorded while the scene settled (video time -> simulation frame at the scene's frame rate),
  shifted by any move the visibility check made, and hold the settled pose after it ends.

All draws come from the scene's "motion" stream, a fixed number per scene and object, so the scene,
its materials and its labels at frame 0 do not depend on the motion settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Quaternion, Vector

from ...core.genconfig import SequenceConfig


@dataclass(frozen=True)
class ObjectMotion:
    velocity: tuple[float, float]  # metres per second along the ground (x, y)
    spin: float  # degrees per second about the vertical axis


@dataclass(frozen=True)
class MotionPlan:
    """What moves how in one scene (drawn once per scene)."""

    objects: list[ObjectMotion]
    camera_orbit: float  # degrees per second about the look-at point
    camera_dolly: float  # metres per second along the view axis, < 0 towards the look-at point

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: SequenceConfig, count: int) -> "MotionPlan":
        """3 draws for the camera, then 4 per object (speed, heading, spin, spin sign)."""
        cam = rng.uniform(size=3)
        orbit = _lerp(cfg.camera_orbit, cam[0]) * (1.0 if cam[1] < 0.5 else -1.0)
        dolly = _lerp(cfg.camera_dolly, cam[2])
        objects = []
        for speed_u, heading_u, spin_u, sign_u in rng.uniform(size=(count, 4)):
            speed = _lerp(cfg.object_speed, speed_u)
            heading = 2.0 * math.pi * float(heading_u)
            spin = _lerp(cfg.object_spin, spin_u) * (1.0 if sign_u < 0.5 else -1.0)
            objects.append(ObjectMotion((speed * math.cos(heading), speed * math.sin(heading)), spin))
        return cls(objects, orbit, dolly)

    def summary(self) -> dict[str, Any]:
        """The record's ``scene.motion``: the camera's rates and each object's velocity and spin."""
        return {"camera_orbit_deg_s": round(self.camera_orbit, 6), "camera_dolly_m_s": round(self.camera_dolly, 6),
                "objects": [{"velocity": [round(v, 6) for v in m.velocity], "spin_deg_s": round(m.spin, 6)}
                            for m in self.objects]}


def _lerp(pair: list[float], u: float) -> float:
    return float(pair[0]) + (float(pair[1]) - float(pair[0])) * float(u)


@dataclass
class RestPose:
    """Frame 0: every object's location and rotation, the camera's location and look-at point."""

    locations: list[Vector]
    rotations: list[Quaternion]
    camera_location: Vector
    target: Vector
    # sequence.physics = "falling": object name -> (location, rotation) per simulated frame, each path
    # shifted so it ends where the object rests now (after any visibility move)
    falls: dict[str, list[tuple[Vector, Quaternion]]] = field(default_factory=dict)


def rest_pose(built: Any, falling: bool = False) -> RestPose:
    """The built (settled, visibility-checked) scene's pose; with ``falling`` the recorded drops
    (``BuiltScene.fall``) of the objects and distractors that fell."""
    target = Vector(tuple(float(v) for v in built.camera["instseg_params"]["target"]))
    falls: dict[str, list[tuple[Vector, Quaternion]]] = {}
    for name, matrices in (built.fall.items() if falling else ()):
        steps = [m.decompose()[:2] for m in matrices]
        shift = bpy.data.objects[name].location - steps[-1][0]
        falls[name] = [(loc + shift, rot) for loc, rot in steps]
    return RestPose([so.obj.location.copy() for so in built.objects],
                    [so.obj.rotation_quaternion.copy() for so in built.objects],
                    built.camera.location.copy(), target, falls)


def pose(built: Any, rest: RestPose, plan: MotionPlan, frame: int, fps: float, sim_fps: float = 24.0) -> None:
    """Put the scene in its pose at ``frame`` (absolute: computed from ``rest`` and the frame alone)."""
    t = frame / fps
    step = int(round(t * sim_fps))  # the simulated frame shown at this time (the last one after the drop)
    for name, path in rest.falls.items():
        obj = bpy.data.objects[name]
        obj.animation_data_clear()
        obj.location, obj.rotation_quaternion = path[min(step, len(path) - 1)]
    for so, loc, rot, move in zip(built.objects, rest.locations, rest.rotations, plan.objects):
        obj = so.obj
        obj.animation_data_clear()  # keys an earlier frame's motion blur left would override the pose
        if obj.name in rest.falls:
            continue
        obj.location = loc + Vector((move.velocity[0] * t, move.velocity[1] * t, 0.0))
        obj.rotation_quaternion = Quaternion((0.0, 0.0, 1.0), math.radians(move.spin * t)) @ rot
    camera = built.camera
    camera.animation_data_clear()
    offset = Matrix.Rotation(math.radians(plan.camera_orbit * t), 3, "Z") @ (rest.camera_location - rest.target)
    camera.location = rest.target + offset.normalized() * (offset.length + plan.camera_dolly * t)
    camera.rotation_euler = (rest.target - camera.location).to_track_quat("-Z", "Y").to_euler()
    if camera.data.dof.focus_object is not None:  # an earlier frame's focus; lens.apply sets this frame's
        camera.data.dof.focus_object = None
    bpy.context.view_layer.update()
