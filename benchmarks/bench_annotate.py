"""annotate-scene speed: seconds per frame, masks-only and RGB, against the bare Cycles render of the same frames.

    .venv-blender/bin/python benchmarks/bench_annotate.py [--res 512] [--samples 16] [--frames 4]

The scene (built here, saved to a temp .blend): a ground plane, a sun, 12 keyframed cubes and
spheres and 2 collection instances of a 3-part chair, perspective camera, 24 frames. Rows:

1. bare render: ``frame_set`` + one Cycles render at the scene's settings (``--samples`` spp),
   nothing else: what rendering the animation costs anyway;
2. annotate RGB: ``annotate_scene.render_frame`` (stand-ins, the same RGB render, the 1-sample
   label render, visible + amodal masks, files, record);
3. annotate masks-only: ``render_frame`` with only the label render.

The rows take turns frame by frame (so machine load falls on all alike); medians of wall and CPU
seconds (CPU: all threads of this process, comparable on a busy machine). Overhead =
(annotate RGB - bare) / bare. The first frame is a warm-up, not counted.

4. generator RGB / masks-only: the generator's per-image cost (``render_image.render_index``) on its
   own procedural scenes of 14 objects (the annotated scene's count: 12 shapes + 2 chairs) at the
   same size and samples, for comparison; measured after the rows above (the generator resets
   Blender's data), so not interleaved with them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_scene(path: Path, res: int, samples: int) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 24
    scene.render.resolution_x = scene.render.resolution_y = res
    scene.render.engine = "CYCLES"
    scene.cycles.samples = samples
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.location, cam.rotation_euler = (0.0, -7.0, 5.0), (0.95, 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    scene.collection.objects.link(sun)
    bpy.ops.mesh.primitive_plane_add(size=20.0)
    root = bpy.data.collections.new("InstSeg")
    scene.collection.children.link(root)
    colls = {name: bpy.data.collections.new(name) for name in ("box", "ball", "chair")}
    for coll in colls.values():
        root.children.link(coll)
    for i in range(12):
        if i % 2:
            bpy.ops.mesh.primitive_uv_sphere_add(radius=0.4)
        else:
            bpy.ops.mesh.primitive_cube_add(size=0.7)
        obj = bpy.context.object
        for c in list(obj.users_collection):
            c.objects.unlink(obj)
        colls["ball" if i % 2 else "box"].objects.link(obj)
        x, y = -2.5 + (i % 4) * 1.6, -1.0 + (i // 4) * 1.5
        for frame, dx in ((1, 0.0), (24, 1.0)):
            obj.location = (x + dx, y, 0.4)
            obj.keyframe_insert("location", frame=frame)
    model = bpy.data.collections.new("ChairModel")
    for name, loc in (("seat", (0, 0, 0.4)), ("back", (0, 0.3, 0.8)), ("leg", (0, 0, 0.2))):
        bpy.ops.mesh.primitive_cube_add(size=0.35, location=loc)
        part = bpy.context.object
        part.name = name
        for c in list(part.users_collection):
            c.objects.unlink(part)
        model.objects.link(part)
    for k in range(2):
        empty = bpy.data.objects.new(f"chair_{k}", None)
        empty.instance_type, empty.instance_collection = "COLLECTION", model
        empty.location = (-1.0 + 2.0 * k, 2.5, 0.0)
        colls["chair"].objects.link(empty)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def measure(blend: Path, out: Path, frames: int, samples: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s) per frame of each row. The rows take turns frame by frame, so a busy machine's
    load falls on all of them alike; the first frame is a warm-up, not counted."""
    import bpy

    from blender_instseg.blender import annotate_scene as A
    from blender_instseg.blender.render import cycles as cy
    from blender_instseg.generator import annotate_cli

    argv = ["--blend", str(blend), "--out", str(out), "--device", "cpu", "--samples", str(samples)]
    args = annotate_cli.build_parser().parse_args(argv)
    A.open_scene(args.blend)
    scene, view_layer = bpy.context.scene, bpy.context.view_layer
    frame_list = list(range(1, frames + 2))
    labels = A.scene_labels(scene, args)
    identities = A.collect_identities(scene, view_layer, frame_list, labels)
    A.prepare_render(scene, view_layer, args)
    jobs = {"annotate RGB": A.Job(out / "rgb", frame_list, identities, False, samples, True),
            "annotate masks-only": A.Job(out / "masks", frame_list, identities, True, None, True)}
    times: dict[str, list[tuple[float, float]]] = {"bare render": [], **{name: [] for name in jobs}}
    for index, frame in enumerate(frame_list):
        for name in times:
            t0, c0 = time.perf_counter(), time.process_time()
            if name == "bare render":
                scene.frame_set(frame)
                cy.render()
            else:
                A.render_frame(jobs[name], labels, index)
            if index > 0:
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def measure_generator(out: Path, images: int, res: int, samples: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s) per image of the generator on 14-object scenes, RGB and masks-only; the first
    image of each is a warm-up, not counted."""
    from blender_instseg.blender.render import cycles as cy
    from blender_instseg.blender.render_image import RenderTask, render_index
    from blender_instseg.blender.scene import builder
    from blender_instseg.core.genconfig import GeneratorConfig

    times: dict[str, list[tuple[float, float]]] = {}
    for name, masks_only in (("generator RGB", False), ("generator masks-only", True)):
        cfg = GeneratorConfig()
        cfg.objects.min_count = cfg.objects.max_count = 14
        cfg.render.resolution, cfg.render.samples, cfg.render.masks_only = [res, res], samples, masks_only
        builder.reset_blender()
        task = RenderTask(cfg.validate(), out / name.replace(" ", "_"), 0, images + 1, device=cy.choose_device("cpu"))
        times[name] = []
        for index in range(images + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            render_index(task, index)
            if index > 0:
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", type=int, default=512)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--frames", type=int, default=4, help="frames per row (after one warm-up frame)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        blend = Path(tmp) / "bench.blend"
        build_scene(blend, a.res, a.samples)
        times = measure(blend, Path(tmp), a.frames, a.samples)
        times.update(measure_generator(Path(tmp) / "generator", a.frames, a.res, a.samples))
    print(f"{a.res}x{a.res}, {a.samples} spp, {a.frames} frames, CPU device; median wall / CPU seconds per frame")
    med = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in times.items()}
    for name, (wall, cpu) in med.items():
        print(f"{name:22s} {wall:8.3f} s wall {cpu:8.3f} s CPU")
    (bw, bc), (rw, rc) = med["bare render"], med["annotate RGB"]
    print(f"annotation overhead over the bare render: {rw - bw:+.3f} s wall ({100 * (rw - bw) / bw:+.1f} %), "
          f"{rc - bc:+.3f} s CPU ({100 * (rc - bc) / bc:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
