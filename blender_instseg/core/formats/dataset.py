"""Dataset layout on disk: per-image records, the dataset config, and the merge into COCO files.

The generator never rewrites a growing JSON: each finished image gets its own small record,
written atomically, so a killed run loses at most the image in flight and a resumed run skips
every index that has a record. ``merge_dataset`` is the only place where COCO files are built; it
orders everything by record index so the output bytes do not depend on worker count, sharding or
the order in which images finished.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from ..fileio import atomic_link_or_copy, atomic_write_bytes, atomic_write_json, read_json

log = logging.getLogger(__name__)

RECORDS_DIR = "records"
CONFIG_FILE = "config.json"
ANNOTATIONS_FILE = "annotations.json"
#: keys a record must have to count as a finished image
RECORD_REQUIRED = ("index", "width", "height", "annotations")
#: record keys that name files (relative to the dataset root) belonging to the image
RECORD_FILE_KEYS = ("file_name", "mask_file", "depth_file")
#: image fields copied from a record into COCO ``images[]`` (when present), in this order
IMAGE_KEYS = ("file_name", "width", "height", "seed", "index", "split", "mask_file", "depth_file", "parent_seed", "variant",
              "video_id", "frame_index")
#: annotation fields written first, in this order; any other record field follows, sorted by name
ANNOTATION_KEYS = ("category_id", "segmentation", "area", "bbox", "iscrowd")
MASK_FORMATS = ("rle", "polygon")


def record_path(root: str | Path, index: int) -> Path:
    """Where the record of image ``index`` lives: ``root/records/{index:06d}.json``."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"record index must be a non-negative integer, got {index!r}")
    return Path(root) / RECORDS_DIR / f"{index:06d}.json"


def _check_record(record: Any, where: str) -> dict:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be a JSON object")
    missing = [k for k in RECORD_REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{where}: record is missing {', '.join(missing)}")
    index = record["index"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"{where}: record index must be a non-negative integer, got {index!r}")
    for key in ("width", "height"):
        v = record[key]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{where}: record {key} must be a positive integer, got {v!r}")
    anns = record["annotations"]
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise ValueError(f"{where}: record annotations must be a list of objects")
    for a in anns:
        for key in ("instance_id", "category_id", "segmentation"):
            if key not in a:
                raise ValueError(f"{where}: an annotation is missing {key}")
    ids = [a["instance_id"] for a in anns]
    if len(set(map(str, ids))) != len(ids):
        raise ValueError(f"{where}: duplicate instance_id in one record")
    return record


def write_record(root: str | Path, record: dict) -> Path:
    """Write one image's record atomically; call it only after every file of the image exists."""
    _check_record(record, "write_record")
    path = record_path(root, record["index"])
    return atomic_write_json(path, record)


def read_record(path: str | Path) -> dict:
    """Read and structurally check one record; one-line ``ValueError`` if it is unusable."""
    record = read_json(path, "record")
    return _check_record(record, str(path))


def _record_files(root: Path) -> list[Path]:
    folder = root / RECORDS_DIR
    if not folder.is_dir():
        return []
    # temp files of atomic writes start with "." and end in ".tmp": never picked up
    return sorted(p for p in folder.glob("[0-9]*.json") if p.is_file())


def completed_indices(root: str | Path) -> set[int]:
    """Indices with a readable, complete record whose file name matches its index (for resume)."""
    done: set[int] = set()
    for path in _record_files(Path(root)):
        try:
            record = read_record(path)
        except (ValueError, FileNotFoundError, OSError):
            log.warning("ignoring unreadable record %s", path)
            continue
        if path.name != f"{record['index']:06d}.json":
            log.warning("ignoring record %s: its index is %s", path, record["index"])
            continue
        done.add(record["index"])
    return done


def _check_categories(categories: Any, where: str) -> list[dict]:
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"{where}: 'categories' must be a non-empty list")
    for c in categories:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise ValueError(f"{where}: each category needs an integer 'id' and a string 'name'")
    return categories


def write_dataset_config(root: str | Path, config: dict) -> Path:
    """Write ``root/config.json`` (generator settings + ``categories`` + version), atomically."""
    if not isinstance(config, dict) or "categories" not in config:
        raise ValueError("dataset config must be an object holding 'categories'")
    _check_categories(config["categories"], "dataset config")
    return atomic_write_json(Path(root) / CONFIG_FILE, config, indent=2)


def read_dataset_config(root: str | Path) -> dict:
    """Read ``root/config.json``; one-line errors when it is missing or has no usable categories."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    path = root / CONFIG_FILE
    config = read_json(path, "dataset config")
    if not isinstance(config, dict) or "categories" not in config:
        raise ValueError(f"dataset config has no 'categories': {path}")
    _check_categories(config["categories"], str(path))
    return config


def load_coco(path: str | Path) -> dict:
    """Read a COCO file and check its top level (images/annotations/categories lists)."""
    data = read_json(path, "COCO file")
    if not isinstance(data, dict):
        raise ValueError(f"COCO file must hold a JSON object: {path}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"COCO file has no '{key}': {path}")
        if not isinstance(data[key], list):
            raise ValueError(f"COCO '{key}' must be a list: {path}")
        if not all(isinstance(item, dict) for item in data[key]):
            raise ValueError(f"COCO '{key}' must hold only objects: {path}")
    return data


# --------------------------------------------------------------------------------------------
# merge


def _category_key(categories: list[dict]) -> list[tuple[int, str]]:
    return sorted((int(c["id"]), str(c["name"])) for c in categories)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        return False
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def _bring_file(src: Path, dst: Path) -> None:
    """Hardlink (or copy) ``src`` to ``dst`` atomically; an existing identical file is kept."""
    if dst.exists():
        if _same_file(src, dst):
            return
        raise ValueError(f"merge would overwrite a different file: {dst} (from {src})")
    atomic_link_or_copy(src, dst)


def _relative_file(record: dict, key: str, where: str) -> Path | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: '{key}' must be a relative path string")
    rel = Path(value)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{where}: '{key}' must be a path inside the dataset, got {value!r}")
    return rel


def _to_polygon_segmentation(seg: Any, height: int, width: int, where: str) -> Any:
    from .coco import decode_segmentation, mask_to_polygons

    if not isinstance(seg, dict):
        return seg  # already polygons
    mask = decode_segmentation(seg, height, width)
    polygons, dropped = mask_to_polygons(mask)
    if not polygons:
        log.warning("%s: no polygon could be formed, keeping RLE", where)
        return seg
    if dropped:
        log.warning("%s: %d fragment(s) could not form a polygon", where, dropped)
    return polygons


def _image_entry(record: dict) -> dict:
    entry: dict[str, Any] = {"id": record["index"] + 1}
    for key in IMAGE_KEYS:
        if key in record:
            entry[key] = record[key]
    return entry


def _annotation_entry(ann: dict, ann_id: int, image_id: int, record: dict, mask_format: str, where: str) -> dict:
    entry: dict[str, Any] = {"id": ann_id, "image_id": image_id}
    for key in ANNOTATION_KEYS:
        if key in ann:
            entry[key] = ann[key]
    entry.setdefault("iscrowd", 0)
    for key in sorted(k for k in ann if k not in entry):
        entry[key] = ann[key]
    if mask_format == "polygon":
        h, w = record["height"], record["width"]
        entry["segmentation"] = _to_polygon_segmentation(entry["segmentation"], h, w, where)
        if isinstance(entry.get("amodal_segmentation"), dict):
            entry["amodal_segmentation"] = _to_polygon_segmentation(entry["amodal_segmentation"], h, w, where)
    return entry


def _instance_sort_key(ann: dict) -> tuple:
    iid = ann["instance_id"]
    return (0, iid, "") if isinstance(iid, (int, float)) else (1, 0, str(iid))


def _coco_bytes(info: dict, images: list[dict], annotations: list[dict], categories: list[dict]) -> bytes:
    obj = {"info": info, "images": images, "annotations": annotations, "categories": categories}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def merge_dataset(roots: Sequence[str | Path], out_root: str | Path | None = None, *,
                  mask_format: str = "rle") -> dict[str, Path]:
    """Join the records of one or more dataset folders into COCO files under ``out_root``.

    Returns ``{"all": annotations.json, <split>: annotations_<split>.json, ...}`` (split files only
    when the records carry more than one split). Records and the files they name are brought
    into ``out_root`` too, so it is a complete dataset the validator can check on its own.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    root_paths = [Path(r) for r in roots]
    if not root_paths:
        raise ValueError("merge needs at least one dataset folder")
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
    out = Path(out_root) if out_root is not None else root_paths[0]

    configs = [read_dataset_config(r) for r in root_paths]
    ref_key = _category_key(configs[0]["categories"])
    for root, cfg in zip(root_paths[1:], configs[1:]):
        cat_key = _category_key(cfg["categories"])
        if cat_key != ref_key:
            raise ValueError(f"categories differ between {root_paths[0]} and {root}: {ref_key} vs {cat_key}")
        for key in ("seed", "variants_of"):  # shards of one dataset share them; other datasets do not
            if cfg.get(key) != configs[0].get(key):
                raise ValueError(f"{root_paths[0]} and {root} are not shards of one dataset ({key}: "
                                 f"{configs[0].get(key)!r} vs {cfg.get(key)!r})")
    categories = [
        {"id": c["id"], "name": c["name"], "supercategory": c.get("supercategory", "object")}
        for c in sorted(configs[0]["categories"], key=lambda c: int(c["id"]))
    ]

    # read every record; identical duplicates (e.g. the same shard listed twice) collapse
    records: dict[int, tuple[dict, Path]] = {}
    for root in root_paths:
        files = _record_files(root)
        for path in files:
            record = read_record(path)
            if path.name != f"{record['index']:06d}.json":
                raise ValueError(f"{path}: file name does not match record index {record['index']}")
            idx = record["index"]
            if idx in records:
                other, other_root = records[idx]
                if other != record:
                    raise ValueError(f"index {idx} appears in {other_root} and {root} with different content")
                continue
            records[idx] = (record, root)
    if not records:
        raise ValueError(f"no records found under {', '.join(str(r / RECORDS_DIR) for r in root_paths)}")

    # make out_root a complete dataset: referenced files, records and config
    out.mkdir(parents=True, exist_ok=True)
    for idx, (record, root) in sorted(records.items()):
        where = f"record {idx} in {root}"
        for key in RECORD_FILE_KEYS:
            rel = _relative_file(record, key, where)
            if rel is None:
                continue
            src = root / rel
            if not src.exists():
                raise FileNotFoundError(f"{where}: '{key}' file not found: {src}")
            if root.resolve() != out.resolve():
                _bring_file(src, out / rel)
        if root.resolve() != out.resolve():
            dst = record_path(out, idx)
            if dst.exists():
                if read_json(dst, "record") != record:
                    raise ValueError(f"index {idx} in {out} differs from the one in {root}")
            else:
                atomic_write_json(dst, record)
    if not (out / CONFIG_FILE).exists():
        atomic_write_json(out / CONFIG_FILE, configs[0], indent=2)

    info = {"description": "blender_instseg synthetic dataset"}
    version = configs[0].get("version")
    if version is not None:
        info["version"] = version

    images: list[dict] = []
    annotations: list[dict] = []
    split_of: dict[int, Any] = {}
    ann_id = 1
    for idx, (record, root) in sorted(records.items()):
        image_id = idx + 1
        images.append(_image_entry(record))
        split_of[image_id] = record.get("split")
        for ann in sorted(record["annotations"], key=_instance_sort_key):
            where = f"record {idx} instance {ann['instance_id']}"
            annotations.append(_annotation_entry(ann, ann_id, image_id, record, mask_format, where))
            ann_id += 1

    written: dict[str, Path] = {}
    written["all"] = atomic_write_bytes(out / ANNOTATIONS_FILE, _coco_bytes(info, images, annotations, categories))
    splits = sorted({str(s) for s in split_of.values() if s is not None})
    if len(splits) > 1:
        for split in splits:
            if not split.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"split name {split!r} is not usable in a file name")
            keep = {i for i, s in split_of.items() if s is not None and str(s) == split}
            s_images = [im for im in images if im["id"] in keep]
            s_anns = [a for a in annotations if a["image_id"] in keep]
            written[split] = atomic_write_bytes(out / f"annotations_{split}.json",
                                                _coco_bytes(info, s_images, s_anns, categories))
    # split files left over from an earlier merge with other splits would mislead consumers
    for stale in out.glob("annotations_*.json"):
        if stale not in written.values():
            log.info("removing stale %s", stale)
            stale.unlink()
    log.info("merged %d images, %d annotations into %s", len(images), len(annotations), written["all"])
    return written
