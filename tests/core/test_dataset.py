"""core.formats.dataset: records, config, merge determinism and conflicts, and the merge CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_instseg.core.formats import coco, dataset
from blender_instseg.core.validation.validate import validate_dataset
from tests.core.coco_fixtures import make_record_dataset

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blender_instseg.core", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_record_roundtrip_and_layout(tmp_path: Path) -> None:
    record = {"index": 3, "seed": 9, "file_name": "images/000003.png", "width": 8, "height": 6,
              "annotations": [], "hidden": [{"object_name": "Cube", "reason": "occluded"}]}
    path = dataset.write_record(tmp_path, record)
    assert path == tmp_path / "records" / "000003.json" == dataset.record_path(tmp_path, 3)
    assert dataset.read_record(path) == record
    assert [p.name for p in (tmp_path / "records").iterdir()] == ["000003.json"]  # no temp file left
    with pytest.raises(ValueError, match="missing"):
        dataset.write_record(tmp_path, {"index": 1})
    with pytest.raises(ValueError, match="non-negative"):
        dataset.record_path(tmp_path, -1)


def test_completed_indices_skips_broken_records(tmp_path: Path) -> None:
    make_record_dataset(tmp_path, [0, 1, 2, 3])
    records = tmp_path / "records"
    text = (records / "000001.json").read_text()
    (records / "000001.json").write_text(text[: len(text) // 2])  # truncated
    (records / "000002.json").write_text(json.dumps({"index": 2}))  # incomplete
    (records / "000007.json").write_text((records / "000003.json").read_text())  # name != index
    (records / ".000004.json.abc.tmp").write_text("{")  # an interrupted atomic write
    assert dataset.completed_indices(tmp_path) == {0, 3}
    assert dataset.completed_indices(tmp_path / "missing") == set()


def test_config_roundtrip_and_errors(tmp_path: Path) -> None:
    cfg = {"categories": [{"id": 1, "name": "a"}], "seed": 4}
    dataset.write_dataset_config(tmp_path, cfg)
    assert dataset.read_dataset_config(tmp_path) == cfg
    with pytest.raises(ValueError, match="categories"):
        dataset.write_dataset_config(tmp_path, {"seed": 1})
    with pytest.raises(FileNotFoundError):
        dataset.read_dataset_config(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        dataset.read_dataset_config(tmp_path)


def test_merge_builds_coco_with_ids_splits_and_extras(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(6), empty=[4])
    written = dataset.merge_dataset([root])
    assert set(written) == {"all", "train", "val"}
    coco_all = dataset.load_coco(written["all"])
    assert [im["id"] for im in coco_all["images"]] == [1, 2, 3, 4, 5, 6]
    assert all(im["seed"] == 1000 + im["index"] and im["id"] == im["index"] + 1 for im in coco_all["images"])
    anns = coco_all["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    keys = [(a["image_id"], a["instance_id"]) for a in anns]
    assert keys == sorted(keys)
    assert not any(a["image_id"] == 5 for a in anns)  # the empty image has no annotations ...
    assert any(im["id"] == 5 for im in coco_all["images"])  # ... but is still listed
    a = anns[0]
    assert list(a)[:7] == ["id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"]
    for extra in ("visible_fraction", "amodal_segmentation", "amodal_bbox", "amodal_area", "truncated", "instance_id"):
        assert extra in a
    val = dataset.load_coco(written["val"])
    assert {im["index"] % 3 for im in val["images"]} == {2}
    assert {a["image_id"] for a in val["annotations"]} <= {im["id"] for im in val["images"]}
    assert [c["id"] for c in coco_all["categories"]] == [1, 2, 3]
    report = validate_dataset(root)
    assert report.ok, report.errors


def test_merge_is_byte_identical_whatever_the_order_or_sharding(tmp_path: Path) -> None:
    order = list(range(9))
    random.Random(3).shuffle(order)
    a = make_record_dataset(tmp_path / "a", range(9))
    b = make_record_dataset(tmp_path / "b", order)  # written in shuffled order
    s1 = make_record_dataset(tmp_path / "s1", [0, 2, 4, 6, 8])  # two shards
    s2 = make_record_dataset(tmp_path / "s2", [7, 5, 3, 1])
    wa = dataset.merge_dataset([a])
    wb = dataset.merge_dataset([b])
    ws = dataset.merge_dataset([s2, s1], tmp_path / "joined")
    for key in ("all", "train", "val"):
        assert wa[key].read_bytes() == wb[key].read_bytes() == ws[key].read_bytes()
    # the joined folder is a complete dataset: files were brought over, records copied
    joined = tmp_path / "joined"
    assert sorted(p.name for p in (joined / "records").iterdir()) == [f"{i:06d}.json" for i in range(9)]
    assert (joined / "images" / "000007.png").is_file() and (joined / "masks" / "000008.png").is_file()
    assert validate_dataset(joined).ok
    # merging again (records now also in out_root) gives the same bytes
    assert dataset.merge_dataset([s1, s2], joined)["all"].read_bytes() == wa["all"].read_bytes()


def test_merge_duplicates_and_conflicts(tmp_path: Path) -> None:
    a = make_record_dataset(tmp_path / "a", [0, 1])
    same = make_record_dataset(tmp_path / "same", [1, 2])  # index 1 identical to a's
    out = dataset.merge_dataset([a, same], tmp_path / "out")
    assert len(dataset.load_coco(out["all"])["images"]) == 3

    other = make_record_dataset(tmp_path / "other", [1], seed=5)  # index 1, different scene
    with pytest.raises(ValueError, match="index 1 appears in"):
        dataset.merge_dataset([a, other], tmp_path / "out2")

    renamed = make_record_dataset(tmp_path / "renamed", [5])
    cfg = dataset.read_dataset_config(renamed)
    cfg["categories"][0]["name"] = "sphere"  # same ids, different name
    dataset.write_dataset_config(renamed, cfg)
    with pytest.raises(ValueError, match="categories differ"):
        dataset.merge_dataset([a, renamed], tmp_path / "out3")

    with pytest.raises(ValueError, match="mask_format"):
        dataset.merge_dataset([a], mask_format="bitmap")
    empty = tmp_path / "empty"
    dataset.write_dataset_config(empty, {"categories": [{"id": 1, "name": "x"}]})
    with pytest.raises(ValueError, match="no records"):
        dataset.merge_dataset([empty])
    (a / "images" / "000000.png").unlink()
    with pytest.raises(FileNotFoundError, match="file_name"):
        dataset.merge_dataset([a])


def test_merge_polygon_format_is_exact_and_valid(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(4), splits=False)
    rle_coco = dataset.load_coco(dataset.merge_dataset([root], tmp_path / "rle")["all"])
    written = dataset.merge_dataset([root], tmp_path / "poly", mask_format="polygon")
    assert set(written) == {"all"}  # one split only: no per-split files
    poly_coco = dataset.load_coco(written["all"])
    for a_rle, a_poly in zip(rle_coco["annotations"], poly_coco["annotations"]):
        assert isinstance(a_poly["segmentation"], list) and isinstance(a_poly["amodal_segmentation"], list)
        h = w = 48
        for key in ("segmentation", "amodal_segmentation"):
            assert np.array_equal(coco.decode_segmentation(a_poly[key], h, w),
                                  coco.decode_segmentation(a_rle[key], h, w))
    report = validate_dataset(tmp_path / "poly")
    assert report.ok, report.errors


def test_stale_split_files_are_removed(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(3))
    dataset.merge_dataset([root])
    assert (root / "annotations_val.json").exists()
    for p in (root / "records").iterdir():
        rec = json.loads(p.read_text())
        rec.pop("split")
        p.write_text(json.dumps(rec))
    written = dataset.merge_dataset([root])
    assert set(written) == {"all"} and not (root / "annotations_val.json").exists()


def test_load_coco_errors(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="no 'categories'"):
        dataset.load_coco(p)
    p.write_text(json.dumps({"images": {}, "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match="must be a list"):
        dataset.load_coco(p)
    p.write_text('{"images": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        dataset.load_coco(p)
    with pytest.raises(FileNotFoundError):
        dataset.load_coco(tmp_path / "missing.json")


def test_merge_cli(tmp_path: Path) -> None:
    s1 = make_record_dataset(tmp_path / "s1", [0, 1])
    s2 = make_record_dataset(tmp_path / "s2", [2])
    res = _cli("merge", str(s1), str(s2), "--out", str(tmp_path / "out"), "--mask-format", "polygon")
    assert res.returncode == 0, res.stderr
    assert "annotations.json" in res.stdout
    assert (tmp_path / "out" / "annotations.json").is_file()

    (s2 / "records" / "000002.json").write_text('{"index": 2, "wid')  # corrupt record
    res = _cli("merge", str(s1), str(s2), "--out", str(tmp_path / "out2"))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "000002.json" in res.stderr
    assert not (tmp_path / "out2" / "annotations.json").exists()

    res = _cli("merge", str(tmp_path / "does-not-exist"))
    assert res.returncode != 0 and "Traceback" not in res.stderr and "not found" in res.stderr
    assert not any(name.endswith(".tmp") for _, _, files in os.walk(tmp_path) for name in files)
