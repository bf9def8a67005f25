"""core.formats.yolo: YOLO-seg labels that rasterise back to the masks, ultralytics' layout, dataset.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_instseg.core.formats import coco, dataset
from blender_instseg.core.formats.yolo import export_yolo, label_rows, merge_multi_segment
from tests.core.coco_fixtures import awkward_id_map, make_record_dataset

ROOT = Path(__file__).resolve().parents[2]


def _square(x: float, y: float, s: float) -> np.ndarray:
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], dtype=np.float64)


def _raster(outline: np.ndarray, h: int, w: int) -> np.ndarray:
    return coco.decode_segmentation([outline.reshape(-1).tolist()], h, w).astype(bool)


def test_merge_multi_segment_bridges_enclose_nothing() -> None:
    pieces = [_square(2, 2, 6), _square(20, 4, 5), _square(10, 20, 7), _square(30, 25, 4)]
    h = w = 40
    union = coco.decode_segmentation([p.reshape(-1).tolist() for p in pieces], h, w).astype(bool)
    for k in (1, 2, 3, 4):
        merged = merge_multi_segment(pieces[:k])
        assert merged.shape[1] == 2
        expected = coco.decode_segmentation([p.reshape(-1).tolist() for p in pieces[:k]], h, w).astype(bool)
        assert np.array_equal(_raster(merged, h, w), expected)
    assert np.array_equal(_raster(merge_multi_segment(pieces), h, w), union)
    # a middle piece given clockwise and one counter-clockwise both work
    flipped = [pieces[0], pieces[1][::-1].copy(), pieces[2], pieces[3]]
    assert np.array_equal(_raster(merge_multi_segment(flipped), h, w), union)


def test_label_rows_follow_the_masks() -> None:
    m = awkward_id_map()
    h, w = m.shape
    anns = [{"id": e.instance_id, "category_id": 1 + e.instance_id % 3, "iscrowd": 0, "segmentation": e.rle}
            for e in coco.encode_id_map(m)]
    anns.append({"id": 99, "category_id": 1, "iscrowd": 1, "segmentation": anns[0]["segmentation"]})
    rows = label_rows(anns, w, h)
    assert len(rows) == len(anns) - 1  # crowd skipped
    for ann, row in zip(anns, rows):
        values = row.split()
        assert int(values[0]) == ann["category_id"] - 1
        xy = np.array(values[1:], dtype=np.float64).reshape(-1, 2)
        assert len(xy) >= 3 and xy.min() >= 0.0 and xy.max() <= 1.0
        outline = xy * np.array([w, h])
        back = _raster(outline, h, w)
        mask = m == ann["id"]
        iou = np.logical_and(back, mask).sum() / np.logical_or(back, mask).sum()
        assert iou >= 0.98, (ann["id"], iou)  # holes and disjoint parts survive the single-row form


def _read_yaml(path: Path) -> dict[str, object]:
    """The tiny YAML subset export_yolo writes: top-level scalars (JSON strings) and a names map."""
    out: dict[str, object] = {}
    names: dict[int, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("  "):
            k, v = line.strip().split(": ", 1)
            names[int(k)] = json.loads(v)
        elif line.endswith(":"):
            out[line[:-1]] = names
        else:
            k, v = line.split(": ", 1)
            out[k] = json.loads(v)
    return out


def _ultralytics_split_dir(yaml_path: Path, split: str) -> Path:
    """Where ultralytics' check_det_dataset looks for a split: ``path`` when the yaml has one (an
    absolute one as it is), else the folder holding the yaml; then the split's entry under it."""
    cfg = _read_yaml(yaml_path)
    root = Path(str(cfg["path"])) if cfg.get("path") else yaml_path.parent
    return root / str(cfg[split])


def test_a_moved_dataset_still_finds_its_images(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(4))
    dataset.merge_dataset([root])
    yaml_path = export_yolo(root)
    assert str(tmp_path) not in yaml_path.read_text()  # no absolute path of where it was made
    moved = tmp_path / "elsewhere" / "ds"
    moved.parent.mkdir()
    root.rename(moved)
    found = 0
    for split in ("train", "val"):
        images = _ultralytics_split_dir(moved / yaml_path.name, split)
        assert images.is_dir()
        stems = sorted(p.stem for p in images.iterdir())
        labels = moved / "labels" / images.name  # ultralytics: /images/ -> /labels/
        assert stems and sorted(p.stem for p in labels.iterdir()) == stems
        found += len(stems)
    assert found == 4


def test_export_with_splits(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(7), empty=[3])
    written = dataset.merge_dataset([root])
    yaml_path = export_yolo(root, out_root=tmp_path / "yolo")
    cfg = _read_yaml(yaml_path)
    out = tmp_path / "yolo"
    assert "path" not in cfg and cfg["train"] == "images/train" and cfg["val"] == "images/val"
    assert cfg["names"] == {0: "disc", 1: "box", 2: "triangle"}
    for split in ("train", "val"):
        data = dataset.load_coco(written[split])
        for im in data["images"]:
            image = out / "images" / split / Path(im["file_name"]).name
            assert image.is_file()
            assert image.read_bytes() == (root / im["file_name"]).read_bytes()
            # ultralytics: label path = image path with /images/ -> /labels/ and a .txt suffix
            label = Path(str(image).replace(f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}")).with_suffix(".txt")
            rows = label.read_text().splitlines()
            n_anns = sum(1 for a in data["annotations"] if a["image_id"] == im["id"])
            assert len(rows) == n_anns
            if im["index"] == 3:
                assert rows == []  # empty image -> empty label file (a background image)


def test_export_without_splits_in_place_and_from_polygons(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(3), splits=False)
    dataset.merge_dataset([root])
    cfg = _read_yaml(export_yolo(root))
    assert cfg["train"] == cfg["val"] == "images/train"
    rle_labels = {p.name: p.read_text() for p in (root / "labels" / "train").iterdir()}
    assert len(rle_labels) == 3
    poly = tmp_path / "poly"
    dataset.merge_dataset([root], poly, mask_format="polygon")
    export_yolo(poly)
    assert {p.name: p.read_text() for p in (poly / "labels" / "train").iterdir()} == rle_labels


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        export_yolo(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="run merge first"):
        export_yolo(tmp_path)
    root = make_record_dataset(tmp_path / "ds", range(2), splits=False)
    dataset.merge_dataset([root])
    data = json.loads((root / "annotations.json").read_text())
    data["categories"][2]["id"] = 9
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="contiguous"):
        export_yolo(root)
    dataset.merge_dataset([root])
    (root / "images" / "000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="000001.png"):
        export_yolo(root, out_root=tmp_path / "out")


def test_export_cli(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(2), splits=False)
    dataset.merge_dataset([root])
    cmd = [sys.executable, "-m", "blender_instseg.core", "export-yolo"]
    res = subprocess.run(cmd + [str(root), "--out", str(tmp_path / "y")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "y" / "dataset.yaml").is_file()
    res = subprocess.run(cmd + [str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
