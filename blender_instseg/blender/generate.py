"""The dataset generation loop and its command line (``scripts/generate.py`` calls ``main``).

One image = build the scene from (config, per-image seed) -> settle visibility -> Cycles render
with the Object Index pass in memory -> visible + amodal masks -> files -> record (written last,
atomically). A record on disk means the image is complete, so a rerun of the same command skips
finished indices and ``--workers`` / ``--shard`` runs produce the same records as one process; the
merge orders records by index, so the COCO files are byte-identical whatever produced them.

Exit codes: 0 done (or stopped on request), 1 a render or child process failed, 2 bad arguments
or unusable paths (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .. import __version__
from ..core import dataset, plan, protocol
from ..core.fileio import atomic_write_json
from ..core.genconfig import GeneratorConfig, load_config
from ..procs.child import Child

log = logging.getLogger("blender_instseg.generate")

PROG = "generate.py"
DESCRIPTION = "Render procedural scenes with Cycles into a COCO instance-segmentation dataset (exact masks)."
EPILOG = """\
examples:
  python scripts/generate.py --out out/ds --num-images 100 --seed 1 --masks-only
  blender -b -P scripts/generate.py -- --out out/ds --num-images 100 --seed 1 --samples 32
  python scripts/generate.py --out out/ds --num-images 1000 --workers 2 --export yolo --val-fraction 0.2
  python scripts/generate.py --out out/ds --num-images 100 --export semantic panoptic
  python scripts/generate.py --out out/shard3 --num-images 1000 --shard 3 --num-shards 8 --no-merge
  python scripts/generate.py --out out/all --merge out/shard0 out/shard1 ...
Rerunning the same command resumes: finished images (those with records/NNNNNN.json) are skipped.
"""


#: --export formats -> the OutputConfig switch each one turns on
EXPORTS = ("yolo", "semantic", "panoptic")


class UsageError(ValueError):
    """Bad command-line arguments: reported on one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not usage + message
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("dataset")
    g.add_argument("--out", type=Path, metavar="DIR", help="dataset folder (created; an existing one is resumed)")
    g.add_argument("--num-images", type=int, default=None, metavar="N", help="images in the dataset (default 10)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="global seed; image i uses a seed derived from (seed, i)")
    g.add_argument("--config", type=Path, metavar="FILE", help="generator config (.json or .toml); flags below override it")
    g.add_argument("--variants-of", type=Path, metavar="PLAN.json",
                   help='render variants of given scenes instead: a JSON list of {"seed": S, "count": C[, "first": K]}; '
                        "image i is the i-th variant in plan order (--num-images defaults to the plan's total)")
    s = p.add_argument_group("scene and render (override the config)")
    s.add_argument("--resolution", type=str, metavar="R|WxH", help="R (square) or WxH, e.g. 256 or 640x480")
    s.add_argument("--samples", type=int, metavar="K", help="Cycles samples per pixel for RGB")
    s.add_argument("--masks-only", action="store_true", default=None,
                   help="fast labels: 1 sample, no bounces, no materials; images/ holds a 1-sample clay render")
    s.add_argument("--min-objects", type=int, metavar="A", help="fewest objects per scene")
    s.add_argument("--max-objects", type=int, metavar="B", help="most objects per scene")
    s.add_argument("--physics", action="store_true", default=None, help="drop objects onto the ground (rigid body)")
    s.add_argument("--allow-hidden", action="store_true", default=None,
                   help="do not move fully hidden objects into view (they are still listed in hidden[])")
    s.add_argument("--device", choices=("auto", "cpu", "gpu"), help="Cycles device (auto: GPU when available)")
    s.add_argument("--no-depth", action="store_true", help="skip depth/*.exr")
    o = p.add_argument_group("output")
    o.add_argument("--mask-format", choices=("rle", "polygon"), help="segmentation format of the merged COCO")
    o.add_argument("--export", choices=EXPORTS, nargs="+", action="extend", default=[], metavar="FORMAT",
                   help="also write: yolo (ultralytics YOLO-seg labels/), semantic (semantic/ category maps), "
                        "panoptic (COCO panoptic/ + panoptic*.json); any of them")
    o.add_argument("--val-fraction", type=float, metavar="F", help="fraction of images in the 'val' split (by index)")
    o.add_argument("--no-preview", action="store_true", help="skip preview.png")
    o.add_argument("--no-merge", action="store_true", help="only write records (merge later)")
    o.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                   help="merge these dataset/shard folders into --out instead of rendering")
    r = p.add_argument_group("scale and control")
    r.add_argument("--workers", type=int, default=1, metavar="K", help="parallel child processes on this machine")
    r.add_argument("--shard", type=int, default=None, metavar="I", help="render only indices i with i %% num_shards == shard")
    r.add_argument("--num-shards", type=int, default=None, metavar="N", help="number of shards (job arrays)")
    r.add_argument("--only-index", type=int, default=None, metavar="I", help="re-render just this image index from its seed")
    r.add_argument("--threads", type=int, default=0, metavar="T", help="Cycles threads (0 = all cores; workers split them)")
    r.add_argument("--progress", choices=("auto", "bar", "jsonl", "none"), default="auto",
                   help="progress output: bar on a terminal, jsonl protocol events for a parent process")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


# ----------------------------------------------------------------------------------------------------------------
# configuration


def resolve_config(args: argparse.Namespace) -> GeneratorConfig:
    """Defaults < --config file < flags; validated. Raises ValueError (one line) on any problem."""
    cfg = load_config(args.config) if args.config is not None else GeneratorConfig()
    if args.resolution is not None:
        text = args.resolution.lower()
        try:
            w, h = (int(v) for v in text.split("x")) if "x" in text else (int(text), int(text))
        except ValueError:
            raise UsageError(f"--resolution must be R or WxH, got {args.resolution!r}") from None
        cfg.render.resolution = [w, h]
    if args.samples is not None:
        cfg.render.samples = args.samples
    if args.masks_only:
        cfg.render.masks_only = True
    if args.min_objects is not None:
        cfg.objects.min_count = args.min_objects
    if args.max_objects is not None:
        cfg.objects.max_count = args.max_objects
    if args.physics:
        cfg.physics.enabled = True
    if args.allow_hidden:
        cfg.objects.allow_hidden = True
    if args.device is not None:
        cfg.render.device = args.device
    if args.no_depth:
        cfg.render.depth = False
    if args.mask_format is not None:
        cfg.output.mask_format = args.mask_format
    apply_exports(cfg, args.export)
    if args.val_fraction is not None:
        cfg.output.val_fraction = args.val_fraction
    if args.no_preview:
        cfg.output.preview = False
    return cfg.validate()


def apply_exports(cfg: GeneratorConfig, exports: list[str]) -> None:
    """Turn on ``output.export_<format>`` for each --export format (never off: the config may ask too)."""
    for name in exports:
        setattr(cfg.output, f"export_{name}", True)


def check_args(args: argparse.Namespace) -> None:
    if args.out is None:
        raise UsageError("--out is required")
    if args.num_images is not None and args.num_images < 0:
        raise UsageError(f"--num-images must be >= 0, got {args.num_images}")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if (args.shard is None) != (args.num_shards is None):
        raise UsageError("--shard and --num-shards go together")
    if args.num_shards is not None:
        if args.num_shards < 1:
            raise UsageError(f"--num-shards must be >= 1, got {args.num_shards}")
        if not 0 <= args.shard < args.num_shards:
            raise UsageError(f"--shard must be in [0, {args.num_shards - 1}], got {args.shard}")
        if args.workers > 1:
            raise UsageError("--workers cannot be combined with --shard (a shard is one process)")
    if args.only_index is not None and args.only_index < 0:
        raise UsageError(f"--only-index must be >= 0, got {args.only_index}")


def prepare_out_dir(out: Path) -> None:
    """Create the folder and prove it is writable before any work starts."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out exists and is not a folder: {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out is not writable: {out} ({exc.strerror or exc})") from None


def dataset_config(cfg: GeneratorConfig, seed: int, num_images: int,
                   variants_of: list[plan.PlanEntry] | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "generator": cfg.to_dict(),
        "seed": seed,
        "num_images": num_images,
        "categories": cfg.coco_categories(),
        "version": __version__,
        "files": {
            "images": "8-bit sRGB PNG" + (" (1-sample clay render: masks-only mode)" if cfg.render.masks_only else ""),
            "masks": "16-bit PNG instance-id map, 0 = background, ids = annotations' instance_id",
            "depth": "float32 EXR, metres along the camera axis (z-depth), 0 = no surface" if cfg.render.depth else None,
        },
    }
    if variants_of is not None:
        from .scene.builder import PERTURBATION

        conf["variants_of"] = [e.to_dict() for e in variants_of]
        conf["perturbation"] = dataclasses.asdict(PERTURBATION)
    return conf


def _identity(conf: dict[str, Any]) -> dict[str, Any]:
    """The parts of a dataset config that must match for a resume: everything that changes pixels or labels."""
    gen = json.loads(json.dumps(conf.get("generator", {})))
    out = gen.get("output", {})
    for key in ("mask_format", *(f"export_{name}" for name in EXPORTS), "preview"):
        out.pop(key, None)
    gen.get("render", {}).pop("device", None)
    return {"generator": gen, "seed": conf.get("seed"), "variants_of": conf.get("variants_of")}


def write_or_check_config(out: Path, conf: dict[str, Any], *, write: bool = True) -> None:
    path = out / dataset.CONFIG_FILE
    if path.exists():
        try:
            old = dataset.read_dataset_config(out)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"{out} holds an unreadable dataset config ({exc}); use a new --out") from None
        a, b = _identity(old), _identity(conf)
        if a != b:
            diff = _first_diff(a, b)
            raise UsageError(f"{out} holds a dataset made with other settings ({diff}); use a new --out or the same settings")
        if not write or old.get("num_images") == conf["num_images"]:
            return
    if write:
        atomic_write_json(path, conf, indent=2)


def _first_diff(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_diff(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where}: {a!r} vs {b!r}"


# ----------------------------------------------------------------------------------------------------------------
# rendering one image


@dataclass
class Job:
    """What one process renders."""

    cfg: GeneratorConfig
    out: Path
    seed: int
    num_images: int
    threads: int = 0
    device: str = "CPU"
    variants: list[tuple[int, int]] | None = None  # image index -> (parent seed, variant number)


def split_of(index: int, val_fraction: float) -> str:
    """Deterministic by index, evenly spread, independent of shards: val when floor((i+1)f) > floor(i f)."""
    if val_fraction <= 0:
        return "train"
    import math

    return "val" if math.floor((index + 1) * val_fraction) > math.floor(index * val_fraction) else "train"


class _Timer:
    """Accumulates wall time per phase into a dict when one is given (benchmarks); a no-op otherwise."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.sink is not None:
            now = time.perf_counter()
            self.sink[name] = self.sink.get(name, 0.0) + now - self.t
            self.t = now


def render_index(job: Job, index: int, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Render image ``index`` and write its files, then its record; returns the record.

    ``timings``, when given, accumulates seconds per phase (build, check, render, annotate, write).
    """
    import numpy as np

    from .render import annotate, output
    from .render import cycles as cy
    from .scene import builder

    cfg = job.cfg
    parent: int | None = None
    if job.variants is not None:
        parent, variant = job.variants[index]
        seed = plan.variant_seed(parent, variant)
    else:
        seed = builder.image_seed(job.seed, index)
    w, h = cfg.render.resolution
    masks_only = cfg.render.masks_only
    timer = _Timer(timings)
    built = builder.build_scene(cfg, seed, build_appearance=not masks_only, parent_seed=parent)
    timer.lap("build")
    settings = cy.RenderSettings(w, h, cfg.render.samples, masks_only, cfg.render.max_bounces, cfg.render.depth,
                                 device=job.device, threads=job.threads, seed=seed,
                                 filter_width=1.5 if cfg.render.antialias and not masks_only else 0.01)
    labels, passes = _settle_and_render(built, cfg, settings, timer)
    ids = cy.index_map(labels)
    annotations, hidden, fixups = annotate.build_annotations(built, ids)
    timer.lap("annotate")

    stem = f"{index:06d}"
    file_name = f"images/{stem}.png"
    mask_file = f"masks/{stem}.png"
    depth_file = f"depth/{stem}.exr" if cfg.render.depth else None
    output.write_rgb(job.out / file_name, cy.rgb8(passes))
    timer.lap("write_rgb")
    output.write_id_map(job.out / mask_file, ids)
    if depth_file is not None:
        depth = cy.depth_map(labels)
        output.write_depth(job.out / depth_file, depth if depth is not None else np.zeros((h, w), np.float32))
    record = {
        "index": index,
        "seed": seed,
        "file_name": file_name,
        "width": w,
        "height": h,
        "split": split_of(index, cfg.output.val_fraction),
        "mask_file": mask_file,
        "depth_file": depth_file,
        "annotations": annotations,
        "hidden": hidden,
        "num_objects": len(built.objects),
        "amodal_fixups": fixups,
        "scene": built.params,
    }
    if parent is not None:
        record.update(parent_seed=parent, variant=variant)
    dataset.write_record(job.out, record)  # last: the record marks the image complete
    timer.lap("write_labels")
    return record


def _settle_and_render(built: Any, cfg: GeneratorConfig, settings: Any,
                       timer: _Timer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move fully hidden objects into view (a few tries, deterministic), then render; returns (labels, image).

    Label passes (Object Index, Depth) always come from a render with pixel-centre rays. Checks are
    1-sample index renders: at full size when they also give the labels (masks-only mode, or RGB
    with anti-aliasing, where the anti-aliased RGB render cannot), else at reduced size before one
    RGB render that gives both. Objects still hidden in the label render are recorded in hidden[].
    """
    import bpy
    import numpy as np

    from .render import cycles as cy
    from .scene import builder

    oc = cfg.objects
    check = dict(vars(settings))
    # in masks-only mode the check render also gives the (clay) image, so it keeps its shading
    check.update(masks_only=True, filter_width=0.01, label_only=not settings.masks_only)
    check_settings = cy.RenderSettings(**check)
    w, h = settings.width, settings.height
    labels_from_check = settings.masks_only or settings.filter_width != 0.01
    percentage = 100 if labels_from_check else (50 if max(w, h) <= 256 else 25)
    last: dict[str, Any] | None = None
    if not oc.allow_hidden and oc.max_resample > 0 and built.objects:
        rng = built.rngs["resample"]
        for attempt in range(oc.max_resample + 1):
            cy.configure(check_settings, percentage=percentage)
            passes = cy.render()
            present = set(np.flatnonzero(np.bincount(cy.index_map(passes).ravel())).tolist())
            missing = [o for o in built.objects if o.instance_id not in present]
            if not missing or attempt == oc.max_resample:
                last = passes
                break
            for so in missing:
                builder.move_object(so, built.objects, cfg, rng, built.camera)
            bpy.context.view_layer.update()
    if labels_from_check and last is None:
        cy.configure(check_settings)
        last = cy.render()
    if settings.masks_only:
        assert last is not None
        timer.lap("render")
        return last, last
    timer.lap("check")
    cy.configure(settings)
    passes = cy.render()
    timer.lap("render")
    if labels_from_check:
        assert last is not None
        return last, passes
    return passes, passes


# ----------------------------------------------------------------------------------------------------------------
# progress


class Progress:
    """Terminal bar, JSON-lines protocol events, or nothing."""

    def __init__(self, mode: str, total: int, stream: IO[str] | None = None) -> None:
        self.mode = mode
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self.stream = stream or sys.stdout

    def step(self, n: int = 1, **extra: Any) -> None:
        self.done += n
        self.emit(**extra)

    def emit(self, **extra: Any) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        if self.mode == "jsonl":
            protocol.emit("progress", self.stream, step=self.done, total=self.total, images_per_s=round(rate, 3),
                          eta_s=None if eta is None else round(eta, 1), phase="render", **extra)
        elif self.mode == "bar":
            width = 30
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            eta_s = "?" if eta is None else f"{eta:.0f}s"
            sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {rate:.2f} img/s ETA {eta_s} ")
            sys.stderr.flush()
            if self.done >= self.total:
                sys.stderr.write("\n")

    def finish(self) -> None:
        if self.mode == "bar" and self.done < self.total:
            sys.stderr.write("\n")


class StopWatcher:
    """Reads stdin on a daemon thread; a protocol 'stop' line asks the loop to stop after the current image."""

    def __init__(self, enabled: bool) -> None:
        self.event = threading.Event()
        if enabled and sys.stdin is not None and not sys.stdin.isatty():
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for line in sys.stdin:
                if protocol.is_stop_command(line):
                    self.event.set()
                    return
        except (OSError, ValueError):
            return

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


# ----------------------------------------------------------------------------------------------------------------
# the loops


def run_shard(job: Job, indices: list[int], progress: Progress, stop: StopWatcher) -> bool:
    """Render ``indices`` in order (skipping none: the caller removed finished ones). False if stopped."""
    from .scene import builder

    builder.reset_blender()
    for index in indices:
        if stop.stopped:
            return False
        render_index(job, index)
        progress.step(index=index)
    return True


def run_workers(args: argparse.Namespace, cfg: GeneratorConfig, total_todo: int, progress: Progress,
                stop: StopWatcher, config_path: Path) -> None:
    """Start ``--workers`` children (one shard each, writing into the same folder) and relay their progress."""
    from .children import worker_generator_argv

    k = args.workers
    cores = os.cpu_count() or 1
    threads = args.threads or max(1, cores // k)
    workers: list[Child] = []
    for i in range(k):
        child_args = [
            "--out", str(args.out), "--num-images", str(args.num_images), "--seed", str(args.seed),
            "--config", str(config_path), "--shard", str(i), "--num-shards", str(k), "--no-merge",
            "--progress", "jsonl", "--threads", str(threads),
        ]
        if args.variants_of is not None:
            child_args += ["--variants-of", str(args.variants_of.resolve())]
        if args.verbose:
            child_args.append("--verbose")
        workers.append(Child(worker_generator_argv(child_args), name=f"worker {i}", require_done=False).start())
    errors: list[str] = []
    stop_sent = False
    try:
        while True:
            if stop.stopped and not stop_sent:
                for w in workers:
                    w.send("stop")
                stop_sent = True
            for i, w in enumerate(workers):
                for ev in w.poll():
                    if ev.event == "progress" and ev.get("index") is not None:
                        progress.step(index=ev.get("index"), worker=i)
                    elif ev.event == "error":
                        errors.append(f"worker {i}: {ev.message}")
                    elif ev.event == "log" and ev.message:
                        log.debug("worker %d: %s", i, ev.message)
            if all(w.finished for w in workers):
                break
            time.sleep(0.05)
    finally:
        for w in workers:
            w.close()
    for i, w in enumerate(workers):
        rc = w.returncode
        if rc != 0 and not any(e.startswith(f"worker {i}:") for e in errors):
            tail = next((ln.rstrip() for ln in reversed(w.stderr_tail().splitlines()) if ln.strip()), "no message")
            errors.append(f"worker {i} exited with code {rc}: {tail}")
    if errors:
        raise RuntimeError(errors[0] + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))


def finish_dataset(out: Path, cfg: GeneratorConfig, roots: list[Path] | None = None) -> dict[str, Path]:
    """Merge records into COCO files, then the optional YOLO / semantic / panoptic exports and the preview sheet."""
    paths = dataset.merge_dataset(roots or [out], out_root=out, mask_format=cfg.output.mask_format)
    if cfg.output.export_yolo:
        from ..core import yolo

        paths["yolo"] = yolo.export_yolo(out)
    if cfg.output.export_semantic or cfg.output.export_panoptic:
        from ..core import panoptic

        paths.update(panoptic.export_panoptic(out, semantic=cfg.output.export_semantic,
                                              panoptic=cfg.output.export_panoptic))
    if cfg.output.preview:
        paths["preview"] = write_preview(out)
    return paths


def write_preview(out: Path, count: int = 8) -> Path:
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


def _progress_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    return "bar" if sys.stdout.isatty() else "none"


def run(args: argparse.Namespace) -> int:
    check_args(args)
    mode = _progress_mode(args.progress)
    out: Path = args.out

    if args.merge:
        if args.variants_of is not None:
            raise UsageError("--variants-of renders images; it cannot be combined with --merge")
        for d in args.merge:
            if not d.is_dir():
                raise UsageError(f"--merge folder not found: {d}")
        conf = dataset.read_dataset_config(args.merge[0])
        cfg = GeneratorConfig.from_dict(conf.get("generator", {})).validate()
        if args.mask_format:
            cfg.output.mask_format = args.mask_format
        apply_exports(cfg, args.export)
        if args.no_preview:
            cfg.output.preview = False
        prepare_out_dir(out)
        merged = finish_dataset(out, cfg, roots=list(args.merge))
        if mode == "jsonl":
            protocol.emit("done", out=str(out), files={k: str(v) for k, v in merged.items()})
        return 0

    cfg = resolve_config(args)
    from .scene import meshes

    meshes.check_assets(cfg.asset_names())
    entries = plan.read_plan(args.variants_of) if args.variants_of is not None else None
    pairs = plan.expand_plan(entries) if entries is not None else None
    if pairs is not None and args.num_images is not None and args.num_images != len(pairs):
        raise UsageError(f"--num-images {args.num_images} differs from the {len(pairs)} variants of the plan")
    num_images = len(pairs) if pairs is not None else args.num_images if args.num_images is not None else 10
    args.num_images = num_images
    if args.only_index is not None and args.only_index >= num_images:
        raise UsageError(f"--only-index {args.only_index} is outside --num-images {num_images}")
    prepare_out_dir(out)
    is_child = args.num_shards is not None
    conf = dataset_config(cfg, args.seed, num_images, entries)
    write_or_check_config(out, conf, write=True)

    from .render import cycles as cy

    device = cy.choose_device(cfg.render.device)
    job = Job(cfg, out, args.seed, num_images, threads=args.threads, device=device, variants=pairs)
    stop = StopWatcher(mode == "jsonl")

    if args.only_index is not None:
        todo = [args.only_index]
    else:
        shard, n = (args.shard, args.num_shards) if is_child else (0, 1)
        done = dataset.completed_indices(out)
        todo = [i for i in range(shard, num_images, n) if i not in done]
    progress = Progress(mode, len(todo))
    progress.emit()
    t0 = time.monotonic()
    if args.workers > 1 and len(todo) > 1:
        # children read the settings back from config.json, so they cannot disagree with the parent
        run_workers(args, cfg, len(todo), progress, stop, out / dataset.CONFIG_FILE)
        completed = not stop.stopped
    else:
        completed = run_shard(job, todo, progress, stop)
    progress.finish()
    elapsed = time.monotonic() - t0
    if not completed:
        if mode == "jsonl":
            protocol.emit("done", out=str(out), stopped=True, images=progress.done)
        log.info("stopped after %d image(s); rerun the same command to resume", progress.done)
        return 0
    paths: dict[str, Path] = {}
    if not args.no_merge and not is_child:
        missing = set(range(num_images)) - dataset.completed_indices(out)
        if missing and args.only_index is not None:
            log.info("not merging: %d image(s) of %s have no record yet", len(missing), out)
        elif missing:
            raise RuntimeError(f"{len(missing)} image(s) have no record (e.g. index {min(missing)}); rerun to resume")
        else:
            paths = finish_dataset(out, cfg)
    if mode == "jsonl":
        protocol.emit("done", out=str(out), images=progress.done, seconds=round(elapsed, 3),
                      files={k: str(v) for k, v in paths.items()})
    elif not is_child:
        log.info("%d image(s) rendered in %.1f s into %s", progress.done, elapsed, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry (argv without the program name). Returns the exit code; never raises for bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s: %(message)s",
                        stream=sys.stderr, force=True)
    jsonl = "jsonl" in argv
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (UsageError, ValueError, FileNotFoundError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if jsonl:
            protocol.emit("error", message=msg)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except Exception as exc:  # a failed render or worker, or a bug: one line (the traceback with -v)
        log.debug("generator failed", exc_info=True)
        text = str(exc).splitlines()[0] if str(exc) else ""
        msg = text if isinstance(exc, RuntimeError) and text else f"{type(exc).__name__}: {text}"
        if jsonl:
            protocol.emit("error", message=msg)
        print(f"error: {msg}", file=sys.stderr)
        return 1
