"""The generator's driver and ``main`` (``scripts/generate.py`` calls it): one process, a shard, or a worker pool.

The driver checks the arguments and resolves the config (``generator.cli``), writes or checks
config.json (``generator.resume``), then renders every unfinished index in this process
(``render_image.render_index``) or in ``--workers`` children (``generator.workers``), and merges
the records into COCO files and the optional exports. A record on disk means the image is
complete, so a rerun of the same command skips finished indices and ``--workers`` / ``--shard``
runs produce the same records as one process; the merge orders records by index, so the COCO
files are byte-identical whatever produced them.

Exit codes: 0 done (or stopped on request), 1 a render or child process failed, 2 bad arguments
or unusable paths (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..core import formats, plan, protocol
from ..core.fileio import remove_stale_temp_files
from ..core.formats import dataset, vis
from ..core.genconfig import GeneratorConfig, SequenceConfig
from ..generator import cli
from ..generator.cli import UsageError, held_out_dir, prepare_out_dir
from ..generator.progress import Progress, StopWatcher
from ..generator.resume import write_or_check_config
from ..generator.workers import run_workers
from .children import worker_generator_argv
from .render_image import RenderTask, render_index

log = logging.getLogger("blender_instseg.generate")


def dataset_config(cfg: GeneratorConfig, seed: int, num_images: int,
                   variants_of: list[plan.PlanEntry] | None = None) -> dict[str, Any]:
    """config.json of a dataset: the settings, seed, categories and version (and a variant plan's perturbation)."""
    gen = cfg.to_dict()
    if cfg.sequence == SequenceConfig():  # still images: config.json exactly as before sequences existed
        del gen["sequence"]
    conf: dict[str, Any] = {
        "generator": gen,
        "seed": seed,
        "num_images": num_images,
        "categories": cfg.coco_categories(),
        "version": __version__,
        "files": {
            "images": "8-bit sRGB PNG" + (" or JPEG (file_name)" if cfg.sensor.jpeg_probability > 0 else "")
                      + (" (1-sample clay render: masks-only mode)" if cfg.render.masks_only else ""),
            "masks": "16-bit PNG instance-id map, 0 = background, ids = annotations' instance_id",
            "depth": "float32 EXR, metres along the camera axis (z-depth), 0 = no surface" if cfg.render.depth else None,
        },
    }
    if cfg.sequence.frames > 1:
        conf["files"]["vis"] = (f"{vis.VIS_FILE}: YouTube-VIS layout, one video per scene of "
                                f"{cfg.sequence.frames} frames (image index = scene * frames + frame)")
    if variants_of is not None:
        from .scene.builder import PERTURBATION

        conf["variants_of"] = [e.to_dict() for e in variants_of]
        conf["perturbation"] = dataclasses.asdict(PERTURBATION)
    return conf


def run_shard(task: RenderTask, indices: Iterable[int], progress: Progress, stop: StopWatcher) -> bool:
    """Render ``indices`` in order (skipping none: the caller removed finished ones). False if stopped.
    Blender was reset by ``run`` before the assets were imported."""
    for index in indices:
        if stop.stopped:
            return False
        render_index(task, index)
        progress.step(index=index)
    return True


def finish_dataset(out: Path, cfg: GeneratorConfig, roots: list[Path] | None = None) -> dict[str, Path]:
    """Merge records into COCO files, then the output formats the config asks for (``formats.FORMATS``,
    in table order), the YouTube-VIS files of a sequence dataset and the preview sheet."""
    paths = dataset.merge_dataset(roots or [out], out_root=out, mask_format=cfg.output.mask_format)
    paths.update(formats.write(out, cfg.output.exports))
    if cfg.sequence.frames > 1:
        paths.update(vis.write(out))
    if cfg.output.preview:
        paths["preview"] = write_preview(out)
    return paths


def write_preview(out: Path, count: int = 8) -> Path:
    """preview.png: a contact sheet of the first ``count`` finished images and their id maps."""
    from .render import output

    done = sorted(dataset.completed_indices(out))[:count]
    tiles = []
    for index in done:
        record = dataset.read_record(dataset.record_path(out, index))
        ids = output.read_id_map(out / record["mask_file"])
        rgb = output.read_rgb(out / record["file_name"]) if record.get("file_name") else None
        tiles.append((rgb, ids))
    path = out / "preview.png"
    output.write_preview(path, tiles)
    return path


def run(args: argparse.Namespace) -> int:
    """Do what the parsed command asks; returns the exit code (``main`` turns exceptions into codes 1 and 2)."""
    cli.check_args(args)
    mode = cli.progress_mode(args.progress)
    out: Path = args.out

    if args.merge:
        if args.variants_of is not None:
            raise UsageError("--variants-of renders images; it cannot be combined with --merge")
        for d in args.merge:
            if not d.is_dir():
                raise UsageError(f"--merge folder not found: {d}")
        cfg = cli.merge_config(args, dataset.read_dataset_config(args.merge[0]))
        with held_out_dir(out):
            merged = finish_dataset(out, cfg, roots=list(args.merge))
        if mode == "jsonl":
            protocol.emit("done", out=str(out), files={k: str(v) for k, v in merged.items()})
        return 0

    cfg = cli.resolve_config(args)
    from .scene import meshes

    from .scene import builder

    meshes.check_assets(cfg.asset_names())
    builder.reset_blender()  # an empty factory scene, then the user's assets, imported once for the run
    if args.blend is not None:  # the .blend's collections become the label map (read, never written)
        from .scene import blend_source

        blend_source.use_blend(cfg, args.blend, args.blend_collection)
        cfg.validate()
    max_triangles = cfg.objects.max_triangles
    meshes.preload(cfg.file_shapes(), cfg.objects.assets_dir, max_triangles)
    meshes.preload(cfg.distractor_file_shapes(), cfg.distractors.assets_dir, max_triangles)
    meshes.preload(cfg.blend_shapes(), cfg.objects.blend_file, max_triangles)
    entries, pairs, num_images = cli.resolve_plan(args, cfg.sequence.frames)
    conf = dataset_config(cfg, args.seed, num_images, entries)
    write_or_check_config(out, conf, write=False)  # a resume with other settings is refused before any write
    if args.num_shards is not None:  # shards of one run (job arrays, --workers children) share the folder
        prepare_out_dir(out)
        return _render_dataset(args, cfg, conf, pairs, num_images, mode)
    with held_out_dir(out):
        for path in remove_stale_temp_files(out):
            log.debug("removed %s, left by a killed run", path)
        return _render_dataset(args, cfg, conf, pairs, num_images, mode)


def _render_dataset(args: argparse.Namespace, cfg: GeneratorConfig, conf: dict[str, Any],
                    pairs: list[tuple[int, int]] | None, num_images: int, mode: str) -> int:
    """Write config.json (or check it on resume), render the indices not done yet, merge; the exit code."""
    out: Path = args.out
    is_child = args.num_shards is not None
    write_or_check_config(out, conf, write=True)

    from .render import cycles as cy

    device = cy.choose_device(cfg.render.device)
    task = RenderTask(cfg, out, args.seed, num_images, threads=args.threads, device=device, variants=pairs)
    stop = StopWatcher(mode == "jsonl")

    # the indices to render are generated, never listed: a large --num-images costs nothing up front
    todo: Iterable[int]
    if args.only_index is not None:
        todo, count = [args.only_index], 1
    else:
        # a shard is whole scenes (plan.shard_indices): one build per scene, whatever the worker count
        shard, n = (args.shard, args.num_shards) if is_child else (0, 1)
        frames = cfg.sequence.frames
        done = dataset.completed_indices(out)
        todo = (i for i in plan.shard_indices(num_images, frames, shard, n) if i not in done)
        count = _shard_size(num_images, frames, shard, n) - sum(
            1 for i in done if i < num_images and plan.in_shard(i, frames, shard, n))
    progress = Progress(mode, count)
    progress.emit()
    t0, cpu0 = time.monotonic(), time.process_time()
    in_process = not (args.workers > 1 and count > 1)
    if not in_process:
        # children read the settings back from config.json, so they cannot disagree with the parent
        run_workers(args, progress, stop, out / dataset.CONFIG_FILE, worker_generator_argv)
        completed = not stop.stopped
    else:
        completed = run_shard(task, todo, progress, stop)
    progress.finish()
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    if not completed:
        if mode == "jsonl":
            protocol.emit("done", out=str(out), stopped=True, images=progress.done)
        log.info("stopped after %d image(s); rerun the same command to resume", progress.done)
        return 0
    paths: dict[str, Path] = {}
    if not args.no_merge and not is_child:
        finished = dataset.completed_indices(out)
        missing = num_images - sum(1 for i in finished if 0 <= i < num_images)
        if missing and args.only_index is not None:
            log.info("not merging: %d image(s) of %s have no record yet", missing, out)
        elif missing:
            first = next(i for i in range(num_images) if i not in finished)
            raise RuntimeError(f"{missing} image(s) have no record (e.g. index {first}); rerun to resume")
        else:
            paths = finish_dataset(out, cfg)
    if mode == "jsonl":
        # cpu_seconds: this process's CPU time in the render loop, Cycles' threads included (not the
        # workers': they are other processes), so a benchmark can tell work from waiting
        fields: dict[str, Any] = {"out": str(out), "images": progress.done, "seconds": round(elapsed, 3)}
        if in_process:
            fields["cpu_seconds"] = round(cpu, 3)
        protocol.emit("done", **fields, files={k: str(v) for k, v in paths.items()})
    elif not is_child:
        log.info("%d image(s) rendered in %.1f s into %s", progress.done, elapsed, out)
    return 0


def _shard_size(num_images: int, frames: int, shard: int, num_shards: int) -> int:
    """How many images ``plan.shard_indices`` yields (num_images is whole scenes), without listing them."""
    return len(range(shard, num_images // frames, num_shards)) * frames


def main(argv: list[str] | None = None) -> int:
    """CLI entry (argv without the program name). Returns the exit code; never raises for bad input."""
    return cli.run_main(argv, cli.build_parser(), run, "generator")
