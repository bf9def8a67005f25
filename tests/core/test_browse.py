"""core.formats.browse: a dataset folder's images and labels for the panel's browser and preview (no bpy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from blender_instseg.core.formats import browse, dataset
from tests.core.coco_fixtures import make_record_dataset
from tests.shapes import CATEGORIES

NAMES = {c["id"]: c["name"] for c in CATEGORIES}


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_record_dataset(tmp_path_factory.mktemp("browse") / "ds", [2, 0, 1, 5], size=40, seed=3)
    dataset.merge_dataset([root])
    return root


def test_records_in_index_order_with_masks_names_and_files(records_dir: Path) -> None:
    data = browse.open_folder(records_dir)
    assert data.source == "records" and len(data) == 4
    assert [data.image(i).index for i in range(4)] == [0, 1, 2, 5]
    for position in range(4):
        image = data.image(position)
        record = dataset.read_record(dataset.record_path(records_dir, image.index))
        assert (image.position, image.total, image.file_name) == (position, 4, record["file_name"])
        assert image.split == record["split"] and image.seed == record["seed"]
        assert image.names() == [NAMES[a["category_id"]] for a in record["annotations"]]
        ids = cv2.imread(str(records_dir / record["mask_file"]), cv2.IMREAD_UNCHANGED)
        for mask, ann in zip(image.masks(), record["annotations"]):
            assert np.array_equal(mask, ids == ann["instance_id"])  # the masks are the id map's pixels
        rgb = cv2.imread(str(records_dir / record["file_name"]))[..., ::-1]
        assert np.array_equal(image.rgb(), rgb)
    assert data.image(99).position == 3 and data.image(-4).position == 0  # clamped into the folder


def test_coco_only_folders_give_the_same_images(records_dir: Path, tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    shutil.copytree(records_dir / "images", merged / "images")
    shutil.copy(records_dir / "annotations.json", merged / "annotations.json")
    split_only = tmp_path / "split_only"
    shutil.copytree(records_dir / "images", split_only / "images")
    for name in ("annotations_train.json", "annotations_val.json"):
        shutil.copy(records_dir / name, split_only / name)
    from_records = browse.open_folder(records_dir)
    for folder in (merged, split_only):
        data = browse.open_folder(folder)
        assert len(data) == 4 and data.source != "records"
        for position in range(4):
            a, b = from_records.image(position), data.image(position)
            assert (b.file_name, b.split, b.index, b.names()) == (a.file_name, a.split, a.index, a.names())
            assert np.array_equal(a.masks(), b.masks())
            assert b.categories == NAMES  # no config.json: the COCO file's categories


def test_counts_small_hidden_and_categories(tmp_path: Path) -> None:
    anns = [{"category_id": 1, "area": 1023}, {"category_id": 1, "area": 1024}, {"category_id": 2, "area": 300},
            {"category_id": 7, "area": 5000}]
    hidden = [{"reason": "occluded"}, {"reason": "occluded"}, {"reason": "outside_frame"}]
    image = browse.ImageLabels(folder=tmp_path, position=0, total=1, index=0, file_name="", split="", width=8,
                               height=8, annotations=anns, hidden=hidden, categories=NAMES)
    counts = image.counts()
    assert counts.annotated == 4 and counts.small == 2  # COCO's small: area < 32 x 32
    assert counts.hidden == {"outside_frame": 1, "occluded": 2, "too_little_visible": 0}
    assert counts.by_category == {"disc": 2, "box": 1, "class 7": 1}
    assert counts.categories_line() == "2 disc, 1 box, 1 class 7"
    assert counts.categories_line(most=1) == "2 disc and 2 more"
    assert image.counts(area_scale=3.0).small == 1  # a smaller preview: its areas x 3 in the dataset
    assert image.rgb().shape == (8, 8, 3)  # no image file: grey, the labels still show


def test_bad_folders_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^not a folder: "):
        browse.open_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no records/ and no annotations.json"):
        browse.open_folder(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "annotations.json").write_text("{not json")
    with pytest.raises(ValueError) as info:
        browse.open_folder(tmp_path / "broken")
    assert "\n" not in str(info.value)


def test_a_new_record_is_seen_without_reopening_by_hand(tmp_path: Path) -> None:
    root = make_record_dataset(tmp_path / "ds", [0], size=32)
    assert len(browse.open_folder(root)) == 1
    make_record_dataset(root, [1], size=32)
    assert len(browse.open_folder(root)) == 2
