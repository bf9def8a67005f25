"""``yolo`` format and ``export-yolo`` command: a merged dataset -> ultralytics YOLO-seg ``labels/`` + ``dataset.yaml``.

Ultralytics finds an image's label by replacing ``/images/`` with ``/labels/`` in its path, so
``labels/<split>/<stem>.txt`` needs the image at ``images/<split>/<stem>.<ext>``: the images are
hardlinked there (copied where links are impossible), which costs no disk space.

One row per object: ``<class> x1 y1 ... xn yn`` normalised to [0, 1], class = category id - 1.
YOLO-seg has one polygon per row, so an object in several pieces is joined into one outline the
way ultralytics' own COCO converter does (``merge_multi_segment``: closest points joined by a
thin two-way bridge). Our polygons already carry their holes through zero-width bridges.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..cliargs import path_arg
from ..fileio import atomic_link_or_copy, atomic_write_text
from .coco import decode_segmentation, mask_to_polygons
from .dataset import ANNOTATIONS_FILE, load_coco

log = logging.getLogger(__name__)

YAML_FILE = "dataset.yaml"


def _closest_pair(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> tuple[int, int]:
    """Indices of the closest vertices of a and b (exact, in row chunks to bound memory)."""
    best, bi, bj = np.inf, 0, 0
    for start in range(0, len(a), chunk):
        d = ((a[start:start + chunk, None, :] - b[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        if d[i, j] < best:
            best, bi, bj = float(d[i, j]), start + int(i), int(j)
    return bi, bj


def merge_multi_segment(segments: list[np.ndarray]) -> np.ndarray:
    """Join several (K, 2) polygons into one outline through their closest points.

    Same walk as ultralytics' converter: out along the chain of pieces on a forward pass, back on
    a return pass, each bridge traversed once each way so it encloses no area. Middle pieces keep
    their orientation (ultralytics reverses some and then indexes the reversed copy with the
    unreversed indices; here entry/exit indices always refer to the array that is walked).
    """
    if len(segments) == 1:
        return segments[0]
    n = len(segments)
    links: list[list[int]] = [[] for _ in range(n)]  # [entry, exit] vertex per piece
    for k in range(1, n):
        i, j = _closest_pair(segments[k - 1], segments[k])
        links[k - 1].append(i)  # exit of k-1
        links[k].append(j)  # entry of k
    forward: list[np.ndarray] = []
    backward: list[np.ndarray] = []
    for k, seg in enumerate(segments):
        if k == 0 or k == n - 1:
            start = links[k][0]
            rolled = np.roll(seg, -start, axis=0)
            forward.append(np.concatenate([rolled, rolled[:1]]))
            continue
        entry, exit_ = links[k]
        rolled = np.roll(seg, -entry, axis=0)
        stop = (exit_ - entry) % len(seg)
        closed = np.concatenate([rolled, rolled[:1]])
        forward.append(closed[: stop + 1])
        backward.append(closed[stop:])
    return np.concatenate(forward + backward[::-1])


def _annotation_polygons(ann: dict, h: int, w: int) -> list[np.ndarray]:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        polys = seg
    else:
        polys, dropped = mask_to_polygons(decode_segmentation(seg, h, w))
        if dropped:
            log.warning("annotation %s: %d fragment(s) could not form a polygon", ann.get("id"), dropped)
    return [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polys if len(p) >= 6]


def label_rows(anns: list[dict], width: int, height: int) -> list[str]:
    """YOLO-seg label lines for one image's annotations (crowd annotations skipped)."""
    rows: list[str] = []
    scale = np.array([width, height], dtype=np.float64)
    for ann in anns:
        if ann.get("iscrowd", 0):
            continue
        pieces = _annotation_polygons(ann, height, width)
        if not pieces:
            log.warning("annotation %s has no polygon; skipped in the YOLO labels", ann.get("id"))
            continue
        outline = np.clip(merge_multi_segment(pieces) / scale, 0.0, 1.0)
        coords = " ".join(f"{v:.6f}" for v in outline.reshape(-1))
        rows.append(f"{int(ann['category_id']) - 1} {coords}")
    return rows


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        try:
            if os.path.samefile(src, dst):
                return
        except OSError:
            pass
        dst.unlink()
    atomic_link_or_copy(src, dst)


def _split_files(root: Path) -> dict[str, Path]:
    """{split: COCO file}; the merged all-images file counts as "train" when there are no split files."""
    splits = {p.stem[len("annotations_"):]: p for p in sorted(root.glob("annotations_*.json"))}
    if splits:
        return splits
    if (root / ANNOTATIONS_FILE).is_file():
        return {"train": root / ANNOTATIONS_FILE}
    raise FileNotFoundError(f"no {ANNOTATIONS_FILE} in {root} (run merge first)")


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def export_yolo(dataset_root: str | Path, *, out_root: str | Path | None = None) -> Path:
    """Write ``labels/<split>/<stem>.txt``, ``images/<split>/`` links and ``dataset.yaml``; return the yaml."""
    root = Path(dataset_root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    out = Path(out_root) if out_root is not None else root
    splits = _split_files(root)
    names: dict[int, str] | None = None
    for split, path in splits.items():
        data = load_coco(path)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        ids = [c["id"] for c in cats]
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"{path}: category ids must be contiguous 1..K for YOLO classes, got {ids}")
        split_names = {c["id"] - 1: str(c["name"]) for c in cats}
        if names is not None and names != split_names:
            raise ValueError(f"{path}: categories differ from the other split files")
        names = split_names
        by_image: dict[Any, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        stems: set[str] = set()
        for im in sorted(data["images"], key=lambda im: im["id"]):
            src = root / im["file_name"]
            if not src.is_file():
                raise FileNotFoundError(f"image {im['id']}: file not found: {src} (YOLO export needs RGB images)")
            stem = Path(im["file_name"]).stem
            if stem in stems:
                raise ValueError(f"{path}: two images share the file stem {stem!r}")
            stems.add(stem)
            _link_or_copy(src, out / "images" / split / Path(im["file_name"]).name)
            rows = label_rows(by_image.get(im["id"], []), int(im["width"]), int(im["height"]))
            atomic_write_text(out / "labels" / split / f"{stem}.txt", "".join(r + "\n" for r in rows))
        log.info("%s: %d images, %d annotations -> labels/%s", path.name, len(data["images"]),
                 len(data["annotations"]), split)
    assert names is not None
    train = "train" if "train" in splits else sorted(splits)[0]
    val = next((s for s in ("val", "valid", "validation", "test") if s in splits), train)
    # No `path:` key: ultralytics then takes the folder holding dataset.yaml as the dataset root
    # (check_det_dataset: `data.get("path") or Path(yaml_file).parent`), so a moved or copied
    # dataset still trains. An absolute path would point at the old place; a relative one
    # (`path: .`) is read against the working directory or ultralytics' own datasets folder.
    lines = [f"train: {_yaml_str('images/' + train)}", f"val: {_yaml_str('images/' + val)}"]
    if "test" in splits and val != "test":
        lines.append(f"test: {_yaml_str('images/test')}")
    lines.append("names:")
    lines += [f"  {k}: {_yaml_str(v)}" for k, v in sorted(names.items())]
    return atomic_write_text(out / YAML_FILE, "\n".join(lines) + "\n")


def write(dataset_root: Path) -> dict[str, Path]:
    """The ``yolo`` row of ``FORMATS``: the export into the dataset folder itself; ``{"yolo": dataset.yaml}``."""
    return {"yolo": export_yolo(dataset_root)}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=path_arg, metavar="DATASET", help="merged dataset folder (annotations*.json)")
    parser.add_argument("--out", type=path_arg, default=None,
                        help="where labels/, images/<split>/ and dataset.yaml go (default: DATASET)")


def run(args: argparse.Namespace) -> int:
    try:
        path = export_yolo(args.dataset, out_root=args.out)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed COCO content: {exc!r}") from None
    print(f"wrote {path}")
    return 0
