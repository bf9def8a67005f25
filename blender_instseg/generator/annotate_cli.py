"""annotate-scene's command line: flags, their checks, frame ranges, and the resume identity of config.json.

``scripts/annotate_scene.py`` renders an artist's own scene (its camera, lights, materials and
animation, no randomisation) into the generator's dataset layout. This is its bpy-free half, like
``generator.cli`` is the generator's: everything here can be checked before Blender loads a file.
Bad arguments raise ``UsageError`` (one line; the driver exits 2) before anything is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from ..core.cliargs import OneLineParser, UsageError, path_arg
from ..core.formats import FORMATS, dataset
from ..core.fileio import atomic_write_json
from .resume import _first_diff

PROG = "annotate_scene.py"
DESCRIPTION = ("Annotate your own scene or animation: render its active camera with Cycles, frame by frame, "
               "into a COCO instance-segmentation dataset with exact masks and stable ids over time.")
EPILOG = """\
examples:
  python scripts/annotate_scene.py --blend shot.blend --frames 1-48 --out out/shot --masks-only
  blender -b shot.blend -P scripts/annotate_scene.py -- --out out/shot --samples 16 --export yolo
Categories: the child collections of the 'InstSeg' collection (instseg_role target / distractor /
ignore on each), or an object's custom property instseg_category. Every object, collection
instance, particle and Geometry-Nodes instance with a category keeps one instance id (= track_id)
in every frame. Rerunning the same command resumes: frames with records/NNNNNN.json are skipped.
"""

#: what an object without a category becomes
UNCATEGORIZED = ("background", "ignore")
#: the one video of an annotated scene
VIDEO_ID = 1


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/annotate_scene.py`` (``--help`` prints them); errors raise ``UsageError``."""
    p = OneLineParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("scene")
    g.add_argument("--blend", type=path_arg, metavar="FILE",
                   help="the .blend to annotate (only read, never saved); default: the file Blender has open")
    g.add_argument("--out", type=path_arg, metavar="DIR", help="dataset folder (created; an existing one is resumed)")
    g.add_argument("--frames", metavar="A-B", default=None,
                   help="frame range to render, inside the scene's (default: the scene's frame range); A alone: one frame")
    g.add_argument("--frame-step", type=int, default=1, metavar="N", help="render every N-th frame (default 1)")
    c = p.add_argument_group("categories")
    c.add_argument("--blend-collection", metavar="NAME", default="",
                   help="the parent collection whose child collections are the categories (default: InstSeg)")
    c.add_argument("--category-property", metavar="NAME", default="instseg_category",
                   help="object custom property naming its category (wins over its collection; default instseg_category)")
    c.add_argument("--categories", nargs="+", metavar="NAME", default=None,
                   help="the category list, in id order (default: the target collections, else the property values "
                        "sorted); a category named anywhere else is an error")
    c.add_argument("--uncategorized", choices=UNCATEGORIZED, default="background",
                   help="objects without a category: background (rendered, id 0, default) or ignore (not rendered)")
    r = p.add_argument_group("render")
    r.add_argument("--samples", type=int, metavar="K", help="Cycles samples for RGB (default: the scene's own)")
    r.add_argument("--masks-only", action="store_true",
                   help="fast labels: one 1-sample render per frame with no bounces; images/ holds that render")
    r.add_argument("--no-depth", action="store_true", help="skip depth/*.exr")
    r.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="Cycles device (auto: GPU when available)")
    r.add_argument("--threads", type=int, default=0, metavar="T", help="Cycles threads (0 = all cores)")
    o = p.add_argument_group("output")
    o.add_argument("--mask-format", choices=("rle", "polygon"), default="rle", help="segmentation format of the merged COCO")
    o.add_argument("--export", choices=tuple(FORMATS), nargs="+", action="extend", default=[], metavar="FORMAT",
                   help="also write: " + ", ".join(f"{name} ({fmt.summary})" for name, fmt in FORMATS.items()))
    o.add_argument("--no-preview", action="store_true", help="skip preview.png")
    o.add_argument("--progress", choices=("auto", "bar", "jsonl", "none"), default="auto",
                   help="progress output: bar on a terminal, jsonl protocol events for a parent process")
    o.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Checks of the flags among themselves; ``UsageError`` on the first failure. Writes nothing."""
    if args.out is None:
        raise UsageError("--out is required")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out exists and is not a folder: {args.out}")
    if args.blend is not None and not args.blend.is_file():
        raise UsageError(f"--blend file not found: {args.blend}")
    if args.frames is not None:
        parse_frames(args.frames)
    if args.frame_step < 1:
        raise UsageError(f"--frame-step must be >= 1, got {args.frame_step}")
    if args.samples is not None and args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if args.categories is not None:
        if len(set(args.categories)) != len(args.categories):
            raise UsageError("--categories lists a name twice")
        if any(not name.strip() for name in args.categories):
            raise UsageError("--categories holds an empty name")
    if not args.category_property.strip():
        raise UsageError("--category-property must name a property")


def parse_frames(text: str) -> tuple[int, int]:
    """``"A-B"`` or ``"A"`` -> (first, last), inclusive; ``UsageError`` for anything else."""
    parts = text.strip().split("-")
    try:
        if len(parts) == 1:
            first = last = int(parts[0])
        elif len(parts) == 2:
            first, last = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise UsageError(f"--frames must be A-B or A (frame numbers), got {text!r}") from None
    if last < first:
        raise UsageError(f"--frames {text}: the last frame is before the first")
    return first, last


def frame_list(requested: str | None, step: int, scene_range: tuple[int, int]) -> list[int]:
    """The frames to render: ``requested`` (default the scene's range) every ``step``-th frame;
    ``UsageError`` when the range leaves the scene's."""
    start, end = scene_range
    first, last = parse_frames(requested) if requested is not None else (start, end)
    if first < start or last > end:
        raise UsageError(f"--frames {first}-{last} is outside the scene's frame range {start}-{end}")
    return list(range(first, last + 1, step))


def file_sha256(path: Path) -> str:
    """The source file's content hash: a resume of a changed .blend is refused."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: settings that change only what is written after the labels: a resume may change them
OUTPUT_ONLY = ("mask_format", "exports", "preview", "device", "threads")


def _identity(conf: dict[str, Any]) -> dict[str, Any]:
    settings = {k: v for k, v in conf.get("annotate", {}).items() if k not in OUTPUT_ONLY}
    return {"annotate": settings, "categories": conf.get("categories"), "identities": conf.get("identities")}


def write_or_check_config(out: Path, conf: dict[str, Any], *, write: bool = True) -> None:
    """Write ``out``/config.json, or check that an existing one would render the same frames and labels
    (``UsageError`` naming the first difference). Output-only settings may change between runs;
    ``write=False`` only checks (before the folder is touched)."""
    path = out / dataset.CONFIG_FILE
    if path.exists():
        try:
            old = dataset.read_dataset_config(out)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"{out} holds an unreadable dataset config ({exc}); use a new --out") from None
        if "annotate" not in old:
            raise UsageError(f"{out} holds a generated dataset, not an annotated scene; use a new --out")
        a, b = _identity(old), _identity(conf)
        if a != b:
            raise UsageError(f"{out} holds a dataset made with other settings ({_first_diff(a, b)}); "
                             "use a new --out or the same settings")
        if json.dumps(old, sort_keys=True) == json.dumps(conf, sort_keys=True):
            return
    if write:
        atomic_write_json(path, conf, indent=2)
