"""core.formats.semantic and core.formats.panoptic: semantic maps and COCO panoptic outputs from id maps,
the export command, and the validator's checks of both against the instance annotations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from blender_instseg.core.formats import coco, dataset
from blender_instseg.core.formats import panoptic, semantic
from blender_instseg.core.formats.panoptic import BACKGROUND_SEGMENT_ID, export_panoptic
from blender_instseg.core.validation.validate import validate_dataset
from tests.core.coco_fixtures import awkward_id_map, make_record_dataset, reference_bbox

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blender_instseg.core", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _tree(root: Path, *parts: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for part in parts
            for p in sorted((root / part).rglob("*") if (root / part).is_dir() else [root / part]) if p.is_file()}


def _anns(id_map: np.ndarray, skip: int | None = None) -> list[dict]:
    """Annotations of every id of the map except ``skip``; category 1 + id % 3; id 10 is a crowd."""
    return [{"id": 100 + e.instance_id, "instance_id": e.instance_id, "category_id": 1 + e.instance_id % 3,
             "iscrowd": int(e.instance_id == 10), "segmentation": e.rle}
            for e in coco.encode_id_map(id_map) if e.instance_id != skip]


# ---------------------------------------------------------------------------------------------------------------
# one image


def test_rgb_encoding_round_trips() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, panoptic.MAX_SEGMENT_ID + 1, size=(7, 9))
    ids[0, :3] = [0, BACKGROUND_SEGMENT_ID, panoptic.MAX_SEGMENT_ID]
    rgb = panoptic.id_to_rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (7, 9, 3)
    assert rgb[0, 1].tolist() == [0, 0, 1] and rgb[0, 2].tolist() == [255, 255, 255]
    assert np.array_equal(panoptic.rgb_to_id(rgb), ids)
    # id = R + 256 G + 256^2 B (panopticapi)
    assert panoptic.rgb_to_id(np.array([3, 2, 1], np.uint8)) == 3 + 2 * 256 + 65536
    for bad in (np.array([[-1]]), np.array([[1 << 24]])):
        with pytest.raises(ValueError, match="segment ids must be in"):
            panoptic.id_to_rgb(bad)


def test_semantic_and_panoptic_of_a_hand_made_id_map(caplog: pytest.LogCaptureFixture) -> None:
    m = awkward_id_map()
    anns = _anns(m, skip=7)  # id 7 (one pixel) has no annotation: VOID / 0
    cat_of = {a["instance_id"]: a["category_id"] for a in anns}
    sem = semantic.semantic_map(m, anns)
    assert sem.dtype == np.uint8
    expected = np.zeros(m.shape, np.int64)
    for iid, cat in cat_of.items():
        expected[m == iid] = cat
    assert np.array_equal(sem, expected)
    assert "have no annotation" in caplog.text

    seg, info = panoptic.panoptic_segments(m, anns, stuff_category=4)
    assert [s["id"] for s in info] == sorted(cat_of) + [BACKGROUND_SEGMENT_ID]
    assert np.array_equal(seg == BACKGROUND_SEGMENT_ID, m == 0)
    assert np.array_equal(seg == 0, m == 7)
    for s in info:
        mask = seg == s["id"]
        assert s["area"] == int(mask.sum()) and s["bbox"] == [int(v) for v in reference_bbox(mask)]
        if s["id"] == BACKGROUND_SEGMENT_ID:
            assert (s["category_id"], s["iscrowd"]) == (4, 0)
        else:
            assert np.array_equal(mask, m == s["id"])
            assert s["category_id"] == cat_of[s["id"]] and s["iscrowd"] == int(s["id"] == 10)
    assert json.loads(json.dumps(info)) == info  # plain JSON types


def test_semantic_dtype_and_bad_inputs() -> None:
    m = awkward_id_map()
    anns = _anns(m)
    anns[0]["category_id"] = 300
    assert semantic.semantic_dtype(255) == np.uint8 and semantic.semantic_dtype(256) == np.uint16
    assert semantic.semantic_map(m, anns, dtype=np.uint16).max() == 300
    with pytest.raises(ValueError, match="does not fit uint8"):
        semantic.semantic_map(m, anns, dtype=np.uint8)
    with pytest.raises(ValueError, match="share an instance_id"):
        semantic.semantic_map(m, anns + anns[:1], dtype=np.uint16)
    with pytest.raises(ValueError, match="integer instance_id"):
        panoptic.panoptic_segments(m, [{"id": 1, "category_id": 1}], 4)
    with pytest.raises(ValueError, match="id map values"):
        panoptic.panoptic_segments(np.full((4, 4), BACKGROUND_SEGMENT_ID), [], 4)


def test_panoptic_categories_add_one_stuff_class() -> None:
    cats = [{"id": 2, "name": "b"}, {"id": 1, "name": "a", "supercategory": "shape"}]
    out = panoptic.panoptic_categories(cats)
    assert [(c["id"], c["name"], c["isthing"]) for c in out] == [(1, "a", 1), (2, "b", 1), (3, "background", 0)]
    assert all(len(c["color"]) == 3 for c in out) and len({tuple(c["color"]) for c in out}) == 3
    with pytest.raises(ValueError, match="named 'background'"):
        panoptic.panoptic_categories([{"id": 1, "name": "background"}])


# ---------------------------------------------------------------------------------------------------------------
# a dataset: export + validator


@pytest.fixture()
def exported(tmp_path: Path) -> Path:
    """A merged 6-image dataset with train/val split files (image 4 empty), semantic + panoptic exported."""
    root = make_record_dataset(tmp_path / "ds", range(6), empty=[4])
    dataset.merge_dataset([root])
    export_panoptic(root)
    return root


def test_export_mirrors_the_coco_files_and_validates(exported: Path) -> None:
    for suffix in ("", "_train", "_val"):
        coco_data = dataset.load_coco(exported / f"annotations{suffix}.json")
        pan = json.loads((exported / f"panoptic{suffix}.json").read_text())
        assert pan["images"] == coco_data["images"]
        assert [a["image_id"] for a in pan["annotations"]] == [im["id"] for im in coco_data["images"]]
        assert pan["categories"][-1] == {"id": 4, "name": "background", "supercategory": "background",
                                         "isthing": 0, "color": [128, 128, 128]}
        for entry in pan["annotations"]:
            ids = sorted(a["instance_id"] for a in coco_data["annotations"] if a["image_id"] == entry["image_id"])
            assert [s["id"] for s in entry["segments_info"]] == ids + [BACKGROUND_SEGMENT_ID]
    assert sorted(p.name for p in (exported / "semantic").iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert (panoptic.read_panoptic_png(exported / "panoptic" / "000004.png") == BACKGROUND_SEGMENT_ID).all()
    report = validate_dataset(exported)
    assert report.ok, report.errors[:5]
    assert report.summary["files"]["annotations.json"]["outputs"] == ["panoptic.json", "semantic/"]
    # same input, same bytes
    before = _tree(exported, "semantic", "panoptic", "panoptic.json", "panoptic_train.json", "panoptic_val.json")
    export_panoptic(exported)
    assert _tree(exported, "semantic", "panoptic", "panoptic.json", "panoptic_train.json",
                 "panoptic_val.json") == before


def test_cli_export_chooses_outputs_and_removes_stale_split_files(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(3), splits=False)
    dataset.merge_dataset([root])
    (root / "panoptic_old.json").write_text("{}")  # from an earlier export with other splits
    res = _cli("export-panoptic", str(root), "--semantic")
    assert res.returncode == 0, res.stderr
    assert (root / "semantic").is_dir() and not (root / "panoptic").exists()
    assert (root / "panoptic_old.json").exists()  # a semantic-only export leaves panoptic files alone
    res = _cli("export-panoptic", str(root))
    assert res.returncode == 0, res.stderr
    assert (root / "panoptic.json").is_file() and not (root / "panoptic_old.json").exists()
    assert validate_dataset(root).ok
    res = _cli("export-panoptic", str(tmp_path / "missing"))
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [f"error: dataset folder not found: "
                                                                       f"{tmp_path / 'missing'}"]


def test_export_needs_the_id_maps(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", range(2), splits=False)
    dataset.merge_dataset([root])
    data = json.loads((root / "annotations.json").read_text())
    del data["images"][1]["mask_file"]
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="image 2 has no mask_file"):
        export_panoptic(root)
    with pytest.raises(FileNotFoundError, match="run merge first"):
        export_panoptic(make_record_dataset(tmp_path / "unmerged", range(1)))


def _edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        data = json.loads((root / name).read_text())
        change(data)
        (root / name).write_text(json.dumps(data))
    return apply


def _first_info(data: dict) -> dict:
    return data["annotations"][0]["segments_info"][0]


def _repaint_panoptic(root: Path) -> None:
    """One pixel of image 1's first instance becomes background in the PNG only."""
    path = root / "panoptic" / "000000.png"
    seg = panoptic.read_panoptic_png(path)
    first = json.loads((root / "panoptic.json").read_text())["annotations"][0]["segments_info"][0]["id"]
    y, x = np.argwhere(seg == first)[0]
    seg[y, x] = BACKGROUND_SEGMENT_ID
    panoptic.write_panoptic_png(path, seg)


def _semantic_pixel(root: Path) -> None:
    path = root / "semantic" / "000001.png"
    sem = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    sem[0, 0] = 3 if sem[0, 0] != 3 else 2
    cv2.imwrite(str(path), sem)


CORRUPTIONS: list[tuple[str, Callable[[Path], None], str]] = [
    ("png_garbage", lambda r: (r / "panoptic" / "000002.png").write_bytes(b"not a png"),
     "panoptic.json: image 3: panoptic PNG does not decode: not an 8-bit RGB PNG"),
    ("png_gray", lambda r: cv2.imwrite(str(r / "panoptic" / "000002.png"), np.zeros((48, 48), np.uint8)),
     "image 3: panoptic PNG does not decode"),
    ("png_missing", lambda r: (r / "panoptic" / "000003.png").unlink(), "image 4: panoptic PNG not found"),
    ("png_repainted", _repaint_panoptic, "differs from the mask of annotation 1 by 1 pixels"),
    ("area", _edit_json("panoptic.json", lambda d: _first_info(d).update(area=_first_info(d)["area"] + 3)),
     "panoptic.json: image 1: segment 1 area"),
    ("bbox", _edit_json("panoptic_val.json", lambda d: _first_info(d).update(bbox=[0, 0, 1, 1])),
     "panoptic_val.json: image 3: segment 1 bbox [0, 0, 1, 1] but its tight bbox"),
    ("category", _edit_json("panoptic.json", lambda d: _first_info(d).update(category_id=4)),
     "do not match the instance ids"),
    ("thing_category", _edit_json("panoptic.json", lambda d: _first_info(d).update(
        category_id=1 + _first_info(d)["category_id"] % 3)), "image 1: segment 1 has category"),
    ("segment_id", _edit_json("panoptic.json", lambda d: _first_info(d).update(id=77)),
     "image 1: segment ids [1] are in panoptic/000000.png but not in segments_info"),
    ("no_entry", _edit_json("panoptic_train.json", lambda d: d["annotations"].pop()),
     "panoptic_train.json: image 5: no annotation (segments_info)"),
    ("stuff_as_thing", _edit_json("panoptic.json", lambda d: d["categories"][-1].update(isthing=1)),
     "category 4 ('background') is a thing category missing from annotations.json"),
    ("json_missing", lambda r: (r / "panoptic_val.json").unlink(),
     "panoptic_val.json not found: the dataset has panoptic outputs"),
    ("semantic_pixel", _semantic_pixel, "annotations.json: image 2: semantic/000001.png differs from the instance "
                                        "masks by category in 1 pixels (first at x=0, y=0"),
    ("semantic_missing", lambda r: (r / "semantic" / "000005.png").unlink(), "image 6: semantic map not found"),
    ("semantic_size", lambda r: cv2.imwrite(str(r / "semantic" / "000000.png"), np.zeros((8, 8), np.uint8)),
     "image 1: semantic/000000.png is 8x8 but the image is 48x48"),
]


@pytest.mark.parametrize("name,corrupt,expected", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_validator_catches(exported: Path, name: str, corrupt: Callable[[Path], None], expected: str) -> None:
    corrupt(exported)
    report = validate_dataset(exported)
    assert not report.ok
    assert any(expected in e for e in report.errors), report.errors
    assert all("\n" not in e for e in report.errors)
