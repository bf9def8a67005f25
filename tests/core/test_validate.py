"""core.validation: a valid dataset passes; each kind of corruption is reported on its own line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest

from blender_instseg.core.formats import coco, dataset
from blender_instseg.core.validation.validate import validate_dataset
from tests.core.coco_fixtures import make_record_dataset

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blender_instseg.core", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def merged(tmp_path: Path) -> Path:
    """A merged 6-image dataset, one split only (so annotations.json is the single file)."""
    root = make_record_dataset(tmp_path / "ds", range(6), splits=False, empty=[5])
    dataset.merge_dataset([root])
    return root


def _edit(root: Path, change: Callable[[dict], Any]) -> None:
    path = root / "annotations.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _errors(root: Path) -> list[str]:
    report = validate_dataset(root)
    assert not report.ok
    return report.errors


def test_valid_dataset_and_summary(merged: Path) -> None:
    report = validate_dataset(merged)
    assert report.ok, report.errors
    s = report.summary["files"]["annotations.json"]
    data = dataset.load_coco(merged / "annotations.json")
    assert s["images"] == 6 and s["annotations"] == len(data["annotations"]) and s["empty_images"] == 1
    assert sum(s["per_category"].values()) == len(data["annotations"])
    res = _cli("validate", str(merged))
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout and "6 images" in res.stdout


def test_shapes_dataset_is_valid(shapes_dataset: Path) -> None:
    report = validate_dataset(shapes_dataset.parent)
    assert report.ok, report.errors


def _first_ann(d: dict) -> dict:
    return d["annotations"][0]


def _swap_visible_into_neighbour(d: dict) -> None:
    """Give annotation 2 the mask of annotation 1 when both are on the same image (overlap)."""
    a, b = d["annotations"][0], d["annotations"][1]
    assert a["image_id"] == b["image_id"]
    b.update(segmentation=a["segmentation"], area=a["area"], bbox=a["bbox"])


def _shift_visible_outside_amodal(d: dict) -> None:
    """Shrink the amodal mask to the visible mask minus one pixel."""
    a = d["annotations"][0]
    m = coco.decode_segmentation(a["segmentation"], 48, 48)
    ys, xs = np.nonzero(m)
    m[ys[0], xs[0]] = 0
    (small,) = coco.encode_masks(m[None])
    a.update(amodal_segmentation=small.rle, amodal_area=small.area, amodal_bbox=small.bbox)


CORRUPTIONS: list[tuple[str, Callable[[dict], Any], str]] = [
    ("bbox", lambda d: _first_ann(d).update(bbox=[0.0, 0.0, 3.0, 3.0]), "tight bbox"),
    ("area", lambda d: _first_ann(d).update(area=_first_ann(d)["area"] + 5), "pixels"),
    ("overlap", _swap_visible_into_neighbour, "overlap"),
    ("categories", lambda d: d["categories"][2].update(id=7), "contiguous"),
    ("category-name", lambda d: d["categories"][1].update(name=d["categories"][0]["name"]), "used by 2"),
    ("unknown-category", lambda d: _first_ann(d).update(category_id=99), "category_id 99"),
    ("dup-ann-id", lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]), "used twice"),
    ("dup-image-id", lambda d: d["images"][1].update(id=d["images"][0]["id"]), "image id 1 is used twice"),
    ("missing-image", lambda d: d["images"][0].update(file_name="images/nope.png"), "not found"),
    ("size", lambda d: d["images"][0].update(width=50), "50x48"),
    ("bad-rle", lambda d: _first_ann(d)["segmentation"].update(size=[10, 10]), "cannot be decoded"),
    ("bad-polygon", lambda d: _first_ann(d).update(segmentation=[[1.0, 2.0]]), ">= 6"),
    ("amodal", _shift_visible_outside_amodal, "outside the amodal mask"),
    ("visible-fraction", lambda d: _first_ann(d).update(visible_fraction=1.5), "not in (0, 1]"),
    ("visible-fraction-area", lambda d: _first_ann(d).update(visible_fraction=0.01), "visible/amodal"),
    ("iscrowd", lambda d: _first_ann(d).pop("iscrowd"), "iscrowd"),
    ("image-ref", lambda d: _first_ann(d).update(image_id=999), "image_id 999"),
]


@pytest.mark.parametrize("name, change, expected", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_each_corruption_is_reported(merged: Path, name: str, change: Callable[[dict], Any], expected: str) -> None:
    _edit(merged, change)
    errors = _errors(merged)
    assert any(expected in e for e in errors), errors


BAD_VALUES = [None, [], {}, "x", -1, 1.5, True]


@pytest.mark.parametrize("section, key", [
    ("annotations", "id"), ("annotations", "image_id"), ("annotations", "category_id"), ("annotations", "iscrowd"),
    ("annotations", "segmentation"), ("annotations", "area"), ("annotations", "bbox"),
    ("annotations", "amodal_segmentation"), ("annotations", "visible_fraction"), ("annotations", "instance_id"),
    ("images", "id"), ("images", "width"), ("images", "file_name"), ("images", "mask_file"),
    ("categories", "id"), ("categories", "name"),
])
def test_malformed_values_are_reported_not_raised(merged: Path, section: str, key: str) -> None:
    original = json.loads((merged / "annotations.json").read_text())
    for value in BAD_VALUES:
        data = json.loads(json.dumps(original))
        data[section][0][key] = value
        (merged / "annotations.json").write_text(json.dumps(data))
        report = validate_dataset(merged)  # must not raise
        allowed = {("amodal_segmentation", None), ("mask_file", None), ("name", "x")}  # legitimately valid
        if not any(key == k and value == v and type(value) is type(v) for k, v in allowed):
            assert not report.ok, (key, value)


def test_id_map_disagreement(merged: Path) -> None:
    ann = dataset.load_coco(merged / "annotations.json")["annotations"][0]
    image = f"masks/{ann['image_id'] - 1:06d}.png"
    id_map = cv2.imread(str(merged / image), cv2.IMREAD_UNCHANGED)
    id_map[id_map == ann["instance_id"]] = 0
    cv2.imwrite(str(merged / image), id_map)
    errors = _errors(merged)
    assert any("differs from id" in e for e in errors), errors


def test_image_file_of_wrong_size(merged: Path) -> None:
    cv2.imwrite(str(merged / "images" / "000002.png"), np.zeros((20, 30, 3), np.uint8))
    errors = _errors(merged)
    assert any("30x20" in e and "48x48" in e for e in errors), errors


@pytest.mark.parametrize("content, expected", [
    ('{"images": [', "not valid JSON"),
    ('{"images": [], "annotations": []}', "no 'categories'"),
    ("[1, 2]", "JSON object"),
])
def test_unloadable_annotation_file(merged: Path, content: str, expected: str) -> None:
    (merged / "annotations.json").write_text(content)
    errors = _errors(merged)
    assert len(errors) == 1 and expected in errors[0]


def test_missing_inputs(tmp_path: Path) -> None:
    assert "not found" in _errors(tmp_path / "missing")[0]
    assert "no annotations.json" in _errors(tmp_path)[0]
    make_record_dataset(tmp_path / "unmerged", [0])
    assert "run merge first" in _errors(tmp_path / "unmerged")[0]


def test_split_files_are_all_checked(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(6))
    dataset.merge_dataset([root])
    report = validate_dataset(root)
    assert report.ok and set(report.summary["files"]) == {"annotations.json", "annotations_train.json",
                                                          "annotations_val.json"}
    path = root / "annotations_val.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["area"] += 1
    path.write_text(json.dumps(data))
    errors = _errors(root)
    assert all(e.startswith("annotations_val.json:") for e in errors) and len(errors) == 1


def test_cli_reports_one_line_per_problem_and_caps(merged: Path) -> None:
    def break_all(d: dict) -> None:
        for a in d["annotations"]:
            a["area"] += 1
    _edit(merged, break_all)
    n = len(dataset.load_coco(merged / "annotations.json")["annotations"])
    res = _cli("validate", str(merged), "--max-errors", "3")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr
    assert len(lines) == 5  # 3 problems, "... and N more", the verdict
    assert f"and {n - 3} more" in lines[3] and lines[4].startswith("INVALID")
    res = _cli("validate", str(merged / "nope"))
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr
    res = _cli("validate")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_images_of_another_run_are_found_by_their_seed(tmp_path: Path) -> None:
    """Two generators on one folder leave images whose seed is not the config's: validate names them."""
    from blender_instseg.core import plan

    root = make_record_dataset(tmp_path / "ds", range(4), size=32)
    conf = dataset.read_dataset_config(root)
    conf.update(seed=5, generator={"render": {"resolution": [32, 32]}})
    dataset.write_dataset_config(root, conf)
    for i in range(4):
        path = dataset.record_path(root, i)
        record = json.loads(path.read_text())
        record["seed"] = plan.image_seed(5 if i != 2 else 6, i)  # index 2 came from a run with seed 6
        dataset.write_record(root, record)
    dataset.merge_dataset([root])
    report = validate_dataset(root)
    assert not report.ok
    assert len(report.errors) == 2  # annotations.json and the split file holding index 2
    assert all("(index 2)" in e and "another run" in e for e in report.errors)
    record = json.loads(dataset.record_path(root, 2).read_text())
    record["seed"] = plan.image_seed(5, 2)
    dataset.write_record(root, record)
    dataset.merge_dataset([root])
    assert validate_dataset(root).ok
