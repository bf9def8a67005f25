"""annotate-scene's driver and ``main`` (``scripts/annotate_scene.py`` calls it): the artist's own scene, frame by frame.

The scene is rendered as it is: its active camera, resolution, lights, materials, world and
animation, with Cycles, no randomisation. Each frame gets the generator's files and record
(``core.formats.dataset``); the COCO merge, the optional exports and the preview are the
generator's own (``generate.finish_dataset``), and ``core.formats.vis`` writes the YouTube-VIS
JSON beside the COCO files.

Identities are fixed once for the whole frame range before any frame is rendered: every object
with a category, and every collection / particle / Geometry-Nodes instance (``scene.instances``)
of an instancer with a category, sorted by (object name, instance index), gets one instance id,
which is also its ``track_id``. So an object keeps its id in every frame, also after leaving and
re-entering the picture, and a resumed run assigns the same ids.

Per frame: ``frame_set`` -> stand-ins for the instances -> pass indices = ids -> (RGB render with
the scene's settings) -> label render (1 sample, pixel-centre rays, no bounces, no motion blur or
depth of field: exact ids at pixel centres) -> visible and amodal masks (``render.annotate``) ->
files -> record (last, atomically). The file is loaded into this process and never saved.

Exit codes: 0 done (or stopped on request), 1 a render failed, 2 bad arguments or an unusable
file (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import bpy
import numpy as np

from .. import __version__
from ..core import protocol
from ..core.fileio import remove_stale_temp_files
from ..core.formats import dataset, vis
from ..core.genconfig import GeneratorConfig
from ..generator import annotate_cli as acli
from ..generator import cli
from ..generator.cli import UsageError, held_out_dir, progress_mode
from ..generator.progress import Progress, StopWatcher
from .render import amodal, annotate, output
from .render import cycles as cy
from .scene import blend_source, instances, transparency
from .scene.assets import AssetImportError

log = logging.getLogger("blender_instseg.annotate_scene")

RENDERABLE = instances.RENDERABLE
MAX_IDS = 65535  # the id maps are 16-bit PNGs


@dataclass(frozen=True)
class Identity:
    """One annotated thing over the whole frame range: an object, or one instance of an instancer."""

    instance_id: int  # = track_id
    category_id: int
    name: str  # the object, or "instancer/index" for an instance
    instancer: str  # the object that makes it (the object itself for a plain object)
    index: int  # its instance index under the instancer; -1: the object's own geometry


@dataclass
class SceneLabels:
    """Which category each object of the scene has (0: background) and which objects are left out."""

    categories: list[str]
    category_of: dict[str, int]
    ignored: list[str]


@dataclass
class Job:
    """What one run renders: the loaded scene's frames, identities and output settings."""

    out: Path
    frames: list[int]
    identities: list[Identity]
    masks_only: bool
    samples: int | None
    depth: bool

    def by_key(self) -> dict[tuple[str, int], Identity]:
        return {(i.instancer, i.index): i for i in self.identities}


def _renders(obj: Any, view_layer: Any) -> bool:
    """The object renders now (as the instancer code decides it: not hidden, visible in the view layer)."""
    return obj.type in RENDERABLE and not obj.hide_render and obj.visible_get(view_layer=view_layer)


# --------------------------------------------------------------------------------------------
# loading and checks (nothing is written before they pass)


def open_scene(blend: Path | None) -> Path:
    """Load ``blend`` (or keep the file Blender has open); returns the file's path. ``UsageError`` when it fails."""
    if blend is None:
        if not bpy.data.filepath:
            raise UsageError("--blend is required (no .blend file is open)")
        return Path(bpy.data.filepath)
    try:
        bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    except RuntimeError as exc:
        text = str(exc).strip().splitlines()
        raise UsageError(f"cannot open {blend}: {text[-1] if text else 'not a .blend file'}") from None
    return blend


def check_scene(scene: Any) -> None:
    """``UsageError`` for a scene that cannot be annotated (no camera, a panoramic one)."""
    if scene.camera is None:
        raise UsageError(f"scene {scene.name!r} has no active camera; set Scene > Camera")
    if scene.camera.type != "CAMERA":
        raise UsageError(f"the active camera {scene.camera.name!r} is not a camera object")
    if scene.camera.data.type == "PANO":
        raise UsageError("panoramic cameras are not supported (their pixels are not pinhole rays)")


def scene_labels(scene: Any, args: argparse.Namespace) -> SceneLabels:
    """Every object's category from its custom property, else its category collection (``blend_source``'s
    roles), else ``--uncategorized``; ``UsageError`` for a category name not in the list."""
    prop = args.category_property
    parent = args.blend_collection or blend_source.DEFAULT_PARENT
    root = bpy.data.collections.get(parent)
    if args.blend_collection and root is None:
        raise UsageError(f"no collection named {parent!r}")
    children: list[Any] = list(root.children) if root is not None else []
    try:
        roles = [(coll, blend_source.role_of(coll)) for coll in children]
    except AssetImportError as exc:
        raise UsageError(str(exc)) from None
    targets = [coll.name for coll, role in roles if role == "target"]
    named = {obj.name: str(obj[prop]) for obj in scene.objects if prop in obj.keys()}
    if args.categories:
        categories = list(args.categories)
        for name in targets:
            if name not in categories:
                raise UsageError(f"collection {name!r} is a category but not in --categories ({', '.join(categories)})")
    else:
        categories = targets or sorted(set(named.values()))
    if not categories:
        raise UsageError(f"nothing to annotate: no collection {parent!r} with category collections and no object "
                         f"with the custom property {prop!r}")
    for obj_name, value in sorted(named.items()):
        if value not in categories:
            raise UsageError(f"object {obj_name!r}: {prop} {value!r} is not a category ({', '.join(categories)})")
    ids = {name: i + 1 for i, name in enumerate(categories)}
    by_collection: dict[str, tuple[str, str]] = {}
    for coll, role in roles:
        for obj in sorted(coll.all_objects, key=lambda o: o.name):
            by_collection.setdefault(obj.name, (role, coll.name))
    category_of: dict[str, int] = {}
    ignored: list[str] = []
    for obj in sorted(scene.objects, key=lambda o: o.name):
        if obj.name in named:
            category_of[obj.name] = ids[named[obj.name]]
            continue
        role, coll_name = by_collection.get(obj.name, ("", ""))
        if role == "target":
            category_of[obj.name] = ids[coll_name]
        elif role == "ignore" or (not role and args.uncategorized == "ignore"):
            ignored.append(obj.name)
        else:
            category_of[obj.name] = 0  # a distractor, or background: renders, occludes, never annotated
    return SceneLabels(categories, category_of, ignored)


def _set_frame(scene: Any, frame: int, labels: SceneLabels) -> None:
    """Go to ``frame``; left-out objects stay out even if their visibility is animated."""
    scene.frame_set(frame)
    for name in labels.ignored:
        bpy.data.objects[name].hide_render = True


def collect_identities(scene: Any, view_layer: Any, frames: list[int], labels: SceneLabels) -> list[Identity]:
    """The identities over all ``frames``: what renders with a category in any of them, ids by sorted
    (object name, instance index), so they do not depend on the frame order or on a resume."""
    keys: set[tuple[str, int]] = set()
    for frame in frames:
        _set_frame(scene, frame, labels)
        made = instances.instance_keys(view_layer)
        makers = {name for name, _ in made}
        keys |= {k for k in made if labels.category_of.get(k[0], 0) > 0}
        keys |= {(obj.name, -1) for obj in scene.objects
                 if labels.category_of.get(obj.name, 0) > 0 and obj.name not in makers and _renders(obj, view_layer)}
    if len(keys) > MAX_IDS:
        raise UsageError(f"{len(keys)} objects and instances to annotate; the 16-bit id maps hold at most {MAX_IDS}")
    return [Identity(k, labels.category_of[name], name if index == -1 else f"{name}/{index}", name, index)
            for k, (name, index) in enumerate(sorted(keys), start=1)]


# --------------------------------------------------------------------------------------------
# rendering


def prepare_render(scene: Any, view_layer: Any, args: argparse.Namespace) -> None:
    """Settings of this process's copy (never saved): Cycles, the passes, the active view layer only,
    no compositor or sequencer (a File Output node would write files), no render region."""
    cy.ensure_cycles_enabled()
    cy.install_capture()
    r = scene.render
    r.engine = "CYCLES"
    r.use_border = False
    r.use_single_layer = True
    r.use_compositing = False
    r.use_sequencer = False
    if args.threads > 0:
        r.threads_mode, r.threads = "FIXED", args.threads
    scene.cycles.device = cy.choose_device(args.device)
    if args.samples is not None:
        scene.cycles.samples = args.samples
    view_layer.use_pass_object_index = True
    view_layer.use_pass_combined = True
    view_layer.use_pass_z = not args.no_depth
    settings = r.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0+
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    settings.color_depth = "8"
    for obj in bpy.data.objects:
        obj.pass_index = 0  # the artist's own pass indices would read as instance ids


@dataclass
class _Saved:
    items: list[tuple[Any, str, Any]]

    def restore(self) -> None:
        for owner, name, value in reversed(self.items):
            setattr(owner, name, value)


def _label_settings(scene: Any) -> Iterator[tuple[Any, str, Any]]:
    """(owner, property, value) of the label render: one sample through each pixel centre, no bounces,
    and no motion blur or depth of field, whose rays leave the pinhole the masks are defined by."""
    c = scene.cycles
    yield from ((c, "samples", 1), (c, "filter_width", 0.01), (c, "use_denoising", False),
                (c, "use_adaptive_sampling", False), (c, "max_bounces", 0), (scene.render, "use_motion_blur", False))
    if scene.camera is not None and scene.camera.data.dof.use_dof:
        yield scene.camera.data.dof, "use_dof", False
    # the opaque black-emission override skips textures and light sampling; it writes the same ids
    # unless a material can be seen through or displaces its surface, which keep the real materials
    override = cy.label_material()
    used = [m for m in bpy.data.materials if m.users and m != override]
    if not transparency.label_override_blocker(used):
        yield bpy.context.view_layer, "material_override", override


def _render_labels(scene: Any) -> dict[str, np.ndarray]:
    saved = _Saved([])
    try:
        for owner, name, value in _label_settings(scene):
            saved.items.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)
        return cy.render()
    finally:
        saved.restore()


def _rendered_rgb() -> np.ndarray:
    """The last render as 8-bit RGB with the scene's colour management (view transform, look, exposure)."""
    fd, tmp = tempfile.mkstemp(prefix="instseg-annotate-", suffix=".png")
    os.close(fd)
    try:
        bpy.data.images["Render Result"].save_render(tmp)
        rgb = output.read_rgb(Path(tmp))
    finally:
        os.unlink(tmp)
    if rgb is None:
        raise RuntimeError("the rendered image could not be read back")
    return rgb


def _world_triangles(obj: Any, depsgraph: Any) -> np.ndarray:
    """(T, 3, 3) world-space triangles of the object's evaluated geometry at the current frame."""
    ev = obj.evaluated_get(depsgraph)
    try:
        mesh = ev.to_mesh()
    except RuntimeError:
        return np.zeros((0, 3, 3))
    try:
        if mesh is None or len(mesh.polygons) == 0:
            return np.zeros((0, 3, 3))
        mesh.calc_loop_triangles()
        verts = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", verts)
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
        return amodal.world_triangles(verts.reshape(-1, 3), tris.reshape(-1, 3), np.array(ev.matrix_world, np.float64))
    finally:
        ev.to_mesh_clear()


def render_frame(job: Job, labels: SceneLabels, index: int) -> dict[str, Any]:
    """Render frame ``job.frames[index]``, write its files, then its record; returns the record."""
    scene = bpy.context.scene
    view_layer = bpy.context.view_layer
    frame = job.frames[index]
    _set_frame(scene, frame, labels)
    by_key = job.by_key()
    realized = instances.realize_instances(scene, view_layer)
    try:
        makers = {obj.name for obj in realized.hidden}
        present: list[tuple[Identity, list[Any]]] = []
        for ident in job.identities:
            obj = bpy.data.objects.get(ident.name) if ident.index == -1 else None
            if obj is not None and ident.name not in makers and _renders(obj, view_layer):
                present.append((ident, [obj]))
        for group in realized.groups:
            owner = by_key.get((group.instancer, group.index))
            if owner is None and labels.category_of.get(group.instancer, 0) > 0:
                raise RuntimeError(f"instance {group.instancer}/{group.index} at frame {frame} got no id")
            if owner is not None:
                present.append((owner, group.objects))
        for obj in scene.objects:
            obj.pass_index = 0
        for ident, objs in present:
            for obj in objs:
                obj.pass_index = ident.instance_id
        present.sort(key=lambda p: p[0].instance_id)
        view_layer.update()
        rgb = None
        if not job.masks_only:
            cy.render()
            rgb = _rendered_rgb()
        label_passes = _render_labels(scene)
        if rgb is None:
            rgb = _rendered_rgb()
        ids = cy.index_map(label_passes)
        h, w = ids.shape
        depsgraph = bpy.context.evaluated_depsgraph_get()
        cam = amodal.camera_from_blender(scene, scene.camera, depsgraph)
        if (cam.width, cam.height) != (w, h):
            raise RuntimeError(f"camera frame {cam.width}x{cam.height} does not match the render {w}x{h}")
        stack = np.zeros((len(present), h, w), bool)
        truncated: list[bool] = []
        for k, (_, objs) in enumerate(present):
            tris = np.concatenate([_world_triangles(obj, depsgraph) for obj in objs])
            res = amodal.amodal_mask(tris, cam)
            stack[k] = res.mask
            truncated.append(res.truncated)
        labelled = [annotate.Labelled(i.instance_id, i.category_id, i.name) for i, _ in present]
        annotate.check_ids(labelled, ids)
        annotations, hidden, fixups = annotate.annotations_from_masks(labelled, ids, stack, truncated)
        depth = cy.depth_map(label_passes) if job.depth else None
    finally:
        realized.undo()
    for entry in (*annotations, *hidden):
        entry["track_id"] = entry["instance_id"]
    stem = f"{index:06d}"
    file_name, mask_file = f"images/{stem}.png", f"masks/{stem}.png"
    depth_file = f"depth/{stem}.exr" if job.depth else None
    record = {
        "index": index,
        "file_name": file_name,
        "width": w,
        "height": h,
        "split": "train",
        "mask_file": mask_file,
        "depth_file": depth_file,
        "video_id": acli.VIDEO_ID,
        "frame_index": frame,
        "annotations": annotations,
        "hidden": hidden,
        "num_objects": len(present),
        "amodal_fixups": fixups,
    }
    output.write_rgb(job.out / file_name, rgb)
    output.write_id_map(job.out / mask_file, ids)
    if depth_file is not None:
        output.write_depth(job.out / depth_file, depth if depth is not None else np.zeros((h, w), np.float32))
    dataset.write_record(job.out, record)  # last: the record marks the frame complete
    return record


# --------------------------------------------------------------------------------------------
# the run


def dataset_config(args: argparse.Namespace, source: Path, frames: list[int], labels: SceneLabels,
                   identities: list[Identity], scene: Any) -> dict[str, Any]:
    """config.json of an annotated scene: the settings, the source file's hash, categories and identities."""
    return {
        "annotate": {
            "source": source.name,
            "source_sha256": acli.file_sha256(source),
            "scene": scene.name,
            "frames": frames,
            "samples": None if args.masks_only else (args.samples or int(scene.cycles.samples)),
            "masks_only": bool(args.masks_only),
            "depth": not args.no_depth,
            "blend_collection": args.blend_collection,
            "category_property": args.category_property,
            "uncategorized": args.uncategorized,
            "ignored": labels.ignored,
            "mask_format": args.mask_format,
            "exports": sorted(set(args.export)),
            "preview": not args.no_preview,
            "device": args.device,
            "threads": args.threads,
        },
        "categories": [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(labels.categories)],
        "identities": [{**asdict(i), "track_id": i.instance_id} for i in identities],
        "video": {"id": acli.VIDEO_ID, "name": source.stem},
        "num_images": len(frames),
        "version": __version__,
        "files": {
            "images": "8-bit sRGB PNG with the scene's colour management"
                      + (" (the 1-sample label render: masks-only mode)" if args.masks_only else ""),
            "masks": "16-bit PNG instance-id map, 0 = background, ids = annotations' instance_id = track_id",
            "depth": None if args.no_depth else "float32 EXR, metres along the camera axis (z-depth), 0 = no surface",
            "vis": f"{vis.VIS_FILE}: YouTube-VIS layout (videos, per-frame segmentations, categories)",
        },
    }


def finish(out: Path, args: argparse.Namespace) -> dict[str, Path]:
    """COCO merge, exports and preview (the generator's), then the VIS JSON beside the COCO files."""
    from .generate import finish_dataset

    cfg = GeneratorConfig()
    cfg.output.mask_format = args.mask_format
    cfg.output.add_exports(args.export)
    cfg.output.preview = not args.no_preview
    paths = finish_dataset(out, cfg)
    paths.update(vis.write(out, name=dataset.read_dataset_config(out).get("video", {}).get("name", "")))
    return paths


def run(args: argparse.Namespace) -> int:
    """Do what the parsed command asks; returns the exit code (``main`` turns exceptions into 1 and 2)."""
    acli.check_args(args)
    mode = progress_mode(args.progress)
    source = open_scene(args.blend)
    scene = bpy.context.scene
    view_layer = bpy.context.view_layer
    check_scene(scene)
    frames = acli.frame_list(args.frames, args.frame_step, (scene.frame_start, scene.frame_end))
    labels = scene_labels(scene, args)
    for name in labels.ignored:
        bpy.data.objects[name].hide_render = True
    identities = collect_identities(scene, view_layer, frames, labels)
    conf = dataset_config(args, source, frames, labels, identities, scene)
    out: Path = args.out
    acli.write_or_check_config(out, conf, write=False)  # a resume with other settings changes nothing
    with held_out_dir(out):
        for path in remove_stale_temp_files(out):
            log.debug("removed %s, left by a killed run", path)
        acli.write_or_check_config(out, conf)
        return _render_frames(args, scene, view_layer, out, frames, identities, labels, mode)


def _render_frames(args: argparse.Namespace, scene: Any, view_layer: Any, out: Path, frames: list[int],
                   identities: list[Identity], labels: SceneLabels, mode: str) -> int:
    """Render the frames without a record yet, then merge; the exit code."""
    prepare_render(scene, view_layer, args)
    job = Job(out, frames, identities, bool(args.masks_only), args.samples, not args.no_depth)
    done = dataset.completed_indices(out)
    todo = [i for i in range(len(frames)) if i not in done]
    progress = Progress(mode, len(todo))
    progress.emit()
    stop = StopWatcher(mode == "jsonl")
    t0 = time.monotonic()
    for index in todo:
        if stop.stopped:
            break
        render_frame(job, labels, index)
        progress.step(index=index)
    progress.finish()
    elapsed = time.monotonic() - t0
    if stop.stopped:
        if mode == "jsonl":
            protocol.emit("done", out=str(out), stopped=True, images=progress.done)
        log.info("stopped after %d frame(s); rerun the same command to resume", progress.done)
        return 0
    paths = finish(out, args)
    if mode == "jsonl":
        protocol.emit("done", out=str(out), images=progress.done, seconds=round(elapsed, 3),
                      files={k: str(v) for k, v in paths.items()})
    else:
        log.info("%d frame(s) rendered in %.1f s into %s (%d identities)", progress.done, elapsed, out, len(identities))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry (argv without the program name). Returns the exit code; never raises for bad input."""
    return cli.run_main(argv, acli.build_parser(), run, "annotate-scene")
