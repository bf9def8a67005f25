"""The generator's command line: flags, their checks, and the config they resolve to (defaults < --config < flags).

Bad arguments raise ``UsageError`` (one line; ``main`` exits 2 with it) before anything is written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from ..core import plan, protocol
from ..core.cliargs import OneLineParser, UsageError, path_arg
from ..core.folder_lock import FolderBusy, FolderLock
from ..core.formats import FORMATS
from ..core.genconfig import GeneratorConfig, load_config
from . import media, sources

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
  python scripts/generate.py --out out/videos --num-images 40 --frames 8 --masks-only   # 5 scenes x 8 frames
Rerunning the same command resumes: finished images (those with records/NNNNNN.json) are skipped.
"""


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/generate.py`` (``--help`` prints them); errors raise ``UsageError``."""
    p = OneLineParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("dataset")
    g.add_argument("--out", type=path_arg, metavar="DIR", help="dataset folder (created; an existing one is resumed)")
    g.add_argument("--num-images", type=int, default=None, metavar="N",
                   help="images in the dataset, a multiple of --frames (default 10 scenes' worth)")
    g.add_argument("--frames", type=int, default=None, metavar="F",
                   help="render each scene as F frames of a video (objects and camera move, ids and track ids "
                        "kept; sequence.* in the config); image i is frame i %% F of scene i // F (default 1)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="global seed; image i uses a seed derived from (seed, i)")
    g.add_argument("--config", type=path_arg, metavar="FILE", help="generator config (.json or .toml); flags below override it")
    g.add_argument("--variants-of", type=path_arg, metavar="PLAN.json",
                   help='render variants of given scenes instead: a JSON list of {"seed": S, "count": C[, "first": K]}; '
                        "image i is the i-th variant in plan order (--num-images defaults to the plan's total)")
    a = p.add_argument_group("your objects (override the config)")
    a.add_argument("--assets", type=path_arg, metavar="DIR",
                   help="your asset files become the objects: every .blend .obj .glb .gltf .fbx .ply .stl (.usd*) "
                        "under DIR, imported with Blender's importers, materials kept; one category per "
                        "subfolder (or per file at the top of DIR)")
    a.add_argument("--blend", type=path_arg, metavar="FILE",
                   help="your .blend is the spec: each child collection of the 'InstSeg' collection (or of the "
                        "scene's top level) is a category, each object or collection in it an instance template; "
                        "the file is only read")
    a.add_argument("--blend-collection", metavar="NAME", default="",
                   help="the parent collection of the categories in --blend (default: InstSeg)")
    a.add_argument("--distractors", type=path_arg, metavar="DIR",
                   help="every asset file under DIR is a distractor: rendered, occluding, never annotated")
    a.add_argument("--max-distractors", type=int, metavar="N",
                   help="distractors per scene: 0..N (default 3 with --distractors)")
    a.add_argument("--placement", choices=("free", "upright"),
                   help="free: random 3D rotation (default); upright: random turn about the vertical axis only")
    a.add_argument("--real-size", action="store_true", default=None,
                   help="keep every object's own size in metres instead of drawing it from objects.scale")
    a.add_argument("--max-triangles", type=int, metavar="N",
                   help="simplify each of your meshes (--assets, --blend, --distractors) that has more than N "
                        "triangles to N, once at import (Blender's Decimate): dense scans render much faster "
                        "on a CPU, and the masks stay exact (default 0: keep every triangle)")
    k = p.add_argument_group("looks (override the config; your own images: docs/generator.md)")
    k.add_argument("--hdri", type=path_arg, metavar="DIR",
                   help="equirectangular environments (.hdr .exr .png .jpg under DIR) light the scene and are "
                        "its background, randomly turned and scaled per image (world.hdri_probability of the images)")
    k.add_argument("--backgrounds", type=path_arg, metavar="DIR",
                   help="photographs (.png .jpg .tif under DIR) behind the scene, with the objects' shadows on "
                        "them; used on images whose camera looks down without seeing the horizon")
    k.add_argument("--textures", type=path_arg, metavar="DIR",
                   help="texture sets (Poly Haven / ambientCG naming: *_diff*/*Color*, *_rough*/*Roughness*, "
                        "*_nor_gl*/*NormalGL*) on the ground, the distractors and some objects")
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
    o.add_argument("--export", choices=tuple(FORMATS), nargs="+", action="extend", default=[], metavar="FORMAT",
                   help="also write: " + ", ".join(f"{name} ({fmt.summary})" for name, fmt in FORMATS.items())
                        + "; any of them")
    o.add_argument("--val-fraction", type=float, metavar="F", help="fraction of images in the 'val' split (by index)")
    o.add_argument("--no-preview", action="store_true", help="skip preview.png")
    o.add_argument("--no-merge", action="store_true", help="only write records (merge later)")
    o.add_argument("--merge", nargs="+", type=path_arg, metavar="DIR",
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


def resolve_config(args: argparse.Namespace) -> GeneratorConfig:
    """Defaults < --config file < flags; validated. Raises ValueError (one line) on any problem."""
    cfg = load_config(args.config) if args.config is not None else GeneratorConfig()
    if args.config is not None:
        # a config's relative asset folders are relative to the config file, not to where it is run
        for section in (cfg.objects, cfg.distractors):
            if section.assets_dir and not Path(section.assets_dir).is_absolute():
                section.assets_dir = str((args.config.parent / section.assets_dir).resolve())
        for owner, key in media.LOOK_FOLDERS:
            folder = getattr(getattr(cfg, owner), key)
            if folder and not Path(folder).is_absolute():
                setattr(getattr(cfg, owner), key, str((args.config.parent / folder).resolve()))
    if args.assets is not None:
        sources.use_asset_folder(cfg, args.assets)
    if args.blend is not None:
        if not args.blend.is_file():
            raise UsageError(f"--blend file not found: {args.blend}")
        cfg.objects.blend_file = str(args.blend.resolve())  # read by Blender in generate.run
    if args.distractors is not None:
        sources.use_distractor_folder(cfg, args.distractors)
    if args.max_distractors is not None:
        cfg.distractors.max_count = args.max_distractors
    if args.placement is not None:
        cfg.objects.placement = args.placement
    if args.real_size:
        cfg.objects.real_size = True
    if args.max_triangles is not None:
        cfg.objects.max_triangles = args.max_triangles
    for flag, (owner, key) in zip((args.hdri, args.backgrounds, args.textures), media.LOOK_FOLDERS):
        if flag is not None:
            setattr(getattr(cfg, owner), key, str(flag.resolve()))
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
    cfg.output.add_exports(args.export)
    if args.val_fraction is not None:
        cfg.output.val_fraction = args.val_fraction
    if args.no_preview:
        cfg.output.preview = False
    if args.frames is not None:
        cfg.sequence.frames = args.frames
    cfg.validate()
    if cfg.sequence.frames > 1 and cfg.sequence.physics == "falling" and not cfg.simulates():
        # checked here, after the flags: a config may ask for falling frames and --physics turn physics on
        raise UsageError("sequence.physics = 'falling' needs physics (--physics or physics.enabled)")
    sources.check_asset_files(cfg)
    media.check_media(cfg)
    return cfg


def check_args(args: argparse.Namespace) -> None:
    """Checks of the flags among themselves (ranges, pairs, exclusions); ``UsageError`` on the first failure."""
    if args.out is None:
        raise UsageError("--out is required")
    if args.assets is not None and args.blend is not None:
        raise UsageError("--assets and --blend are two sources of the objects: choose one (a .blend file can "
                         "also be one of the files in the --assets folder)")
    if args.num_images is not None and not 1 <= args.num_images <= plan.MAX_IMAGES:
        raise UsageError(f"--num-images must be in [1, {plan.MAX_IMAGES}], got {args.num_images}")
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames must be >= 1, got {args.frames}")
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
    _check_not_a_file(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out is not writable: {out} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def held_out_dir(out: Path) -> Iterator[None]:
    """Create the folder and hold it for this run (``core.folder_lock``): a second command on it is
    refused in one line. Creating the lock file is the proof that the folder is writable, and on a
    folder that already has one (a resume) a refusal changes nothing on disk."""
    _check_not_a_file(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(out)
        lock.__enter__()
    except FolderBusy as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out is not writable: {out} ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _check_not_a_file(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out exists and is not a folder: {out}")


def merge_config(args: argparse.Namespace, stored: dict[str, Any]) -> GeneratorConfig:
    """``--merge``: the first folder's generator config, with this command's output flags applied."""
    cfg = GeneratorConfig.from_dict(stored.get("generator", {})).validate()
    if args.mask_format:
        cfg.output.mask_format = args.mask_format
    cfg.output.add_exports(args.export)
    if args.no_preview:
        cfg.output.preview = False
    return cfg


def resolve_plan(args: argparse.Namespace, frames: int = 1
                 ) -> tuple[list[plan.PlanEntry] | None, list[tuple[int, int]] | None, int]:
    """(plan entries, image index -> (parent seed, variant), number of images) for --variants-of / --num-images.

    ``frames`` is images per scene (sequence.frames): the count is then whole scenes, 10 by default.
    Also sets ``args.num_images`` to the resolved count (the worker children are given it).
    """
    if frames > 1:
        if args.variants_of is not None:
            raise UsageError("--variants-of renders still variants of scenes; it cannot be combined with "
                             f"--frames / sequence.frames > 1 (got {frames})")
        if args.num_images is not None and args.num_images % frames:
            raise UsageError(f"--num-images {args.num_images} is not a whole number of scenes of {frames} frames "
                             f"(--frames): use a multiple of {frames}")
        if args.num_images is None:
            args.num_images = min(10 * frames, plan.MAX_IMAGES - plan.MAX_IMAGES % frames)
    entries = plan.read_plan(args.variants_of) if args.variants_of is not None else None
    pairs = plan.expand_plan(entries) if entries is not None else None
    if pairs is not None and args.num_images is not None and args.num_images != len(pairs):
        raise UsageError(f"--num-images {args.num_images} differs from the {len(pairs)} variants of the plan")
    num_images = len(pairs) if pairs is not None else args.num_images if args.num_images is not None else 10
    args.num_images = num_images
    if args.only_index is not None and args.only_index >= num_images:
        raise UsageError(f"--only-index {args.only_index} is outside --num-images {num_images}")
    return entries, pairs, num_images


def progress_mode(requested: str) -> str:
    """``auto``: a bar on a terminal, nothing otherwise; other modes as asked."""
    if requested != "auto":
        return requested
    return "bar" if sys.stdout.isatty() else "none"


def run_main(argv: list[str] | None, parser: argparse.ArgumentParser,
             run: Callable[[argparse.Namespace], int], what: str) -> int:
    """A rendering command's ``main``: parse, run, and turn every failure into one stderr line (and an
    ``error`` event with ``--progress jsonl``) and an exit code: 2 for bad input (``UsageError``,
    ``ValueError``, missing or unusable files), 1 for a failed render or child, 130 when interrupted.
    Never raises for bad input; ``-v`` logs the traceback of a failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s: %(message)s",
                        stream=sys.stderr, force=True)
    jsonl = "jsonl" in argv
    try:
        return run(parser.parse_args(argv))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (UsageError, ValueError, FileNotFoundError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, jsonl, 2)
    except Exception as exc:  # a failed render or child, or a bug: one line (the traceback with -v)
        logging.getLogger(__name__).debug("%s failed", what, exc_info=True)
        text = str(exc).splitlines()[0] if str(exc) else ""
        return _fail(text if isinstance(exc, RuntimeError) and text else f"{type(exc).__name__}: {text}", jsonl, 1)


def _fail(message: str, jsonl: bool, code: int) -> int:
    if jsonl:
        protocol.emit("error", message=message)
    print(f"error: {message}", file=sys.stderr)
    return code
