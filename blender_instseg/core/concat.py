"""Concatenate COCO files from different folders into one, without copying any image.

The mining loop trains on the original train split plus every round's new images. Each source
keeps its files where they are: ``file_name`` (and the ``mask_file`` / ``depth_file`` extras) are
rewritten relative to the new JSON's folder, which is what loaders resolve them against. Image and
annotation ids are renumbered from 1 in source order, so the result does not depend on the ids
the sources happened to use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .fileio import atomic_write_json
from .formats.dataset import RECORD_FILE_KEYS, load_coco


def _rebase(value: Any, src_dir: Path, out_dir: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    path = Path(value)
    if not path.is_absolute():
        path = src_dir / path
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def concat_coco(sources: Sequence[str | Path], out_path: str | Path) -> dict[str, int]:
    """Write the images and annotations of ``sources`` (COCO JSON files) into ``out_path``, atomically.

    Categories must be the same in every source (same ids and names). Returns counts of images
    and annotations. Raises ``ValueError`` (one line) on an unreadable source or other categories.
    """
    if not sources:
        raise ValueError("concat needs at least one COCO file")
    out = Path(out_path)
    out_dir = out.parent
    images: list[dict] = []
    annotations: list[dict] = []
    categories: list[dict] | None = None
    ref_key: list[tuple[int, str]] | None = None
    for src in map(Path, sources):
        data = load_coco(src)
        key = sorted((int(c["id"]), str(c.get("name"))) for c in data["categories"])
        if ref_key is None:
            ref_key, categories = key, data["categories"]
        elif key != ref_key:
            raise ValueError(f"categories of {src} differ from those of {sources[0]}")
        id_map: dict[Any, int] = {}
        for img in data["images"]:
            entry = dict(img)
            id_map[img.get("id")] = entry["id"] = len(images) + 1
            for k in RECORD_FILE_KEYS:
                if k in entry:
                    entry[k] = _rebase(entry[k], src.parent, out_dir)
            images.append(entry)
        for ann in data["annotations"]:
            if ann.get("image_id") not in id_map:
                raise ValueError(f"{src}: annotation {ann.get('id')} names unknown image_id {ann.get('image_id')!r}")
            entry = dict(ann)
            entry["id"] = len(annotations) + 1
            entry["image_id"] = id_map[ann["image_id"]]
            annotations.append(entry)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"info": {"description": "concatenation of " + ", ".join(str(s) for s in sources)},
                            "images": images, "annotations": annotations, "categories": categories})
    return {"images": len(images), "annotations": len(annotations)}
