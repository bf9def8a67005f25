"""``merge`` command: per-image records of one or more dataset folders -> COCO annotation files.

Usage: ``python -m blender_instseg.core merge DATASET [DATASET ...] [--out OUT] [--mask-format polygon]``.
Several folders are how sharded or multi-machine runs come back together; the output does not
depend on their order.
"""

from __future__ import annotations

import argparse

from .cliargs import path_arg
from .formats import vis
from .formats.dataset import MASK_FORMATS, merge_dataset, read_dataset_config


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("datasets", nargs="+", type=path_arg, metavar="DATASET",
                        help="dataset folder(s) holding config.json and records/")
    parser.add_argument("--out", type=path_arg, default=None,
                        help="output dataset folder (default: the first DATASET); files of the other "
                             "folders are hardlinked or copied into it")
    parser.add_argument("--mask-format", choices=MASK_FORMATS, default="rle",
                        help="segmentation format in the COCO files: exact compressed RLE (default) or "
                             "polygons with holes bridged in (for tools that only read polygons)")


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else args.datasets[0]
    try:
        written = merge_dataset(args.datasets, out, mask_format=args.mask_format)
    except (KeyError, TypeError) as exc:  # malformed record content that passed the structure check
        raise ValueError(f"malformed record content: {exc!r}") from None
    # frames of videos (generator --frames, annotate-scene) also get their vis*.json, as the generator writes them
    video = read_dataset_config(out).get("video") or {}
    written.update(vis.write(out, name=str(video.get("name", "")) if isinstance(video, dict) else ""))
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
