"""core.formats.vis (YouTube-VIS layout from a COCO file with tracks) and its check in validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blender_instseg.core.formats import dataset, vis
from blender_instseg.core.validation.validate import validate_dataset
from tests.core.video_fixtures import FRAMES, make_video_dataset


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    root = make_video_dataset(tmp_path / "video")
    dataset.merge_dataset([root])
    assert set(vis.write(root, name="drawn")) == {"vis"}
    return root


def test_merge_carries_video_fields_and_the_vis_file_has_one_entry_per_track(video: Path) -> None:
    coco = dataset.load_coco(video / "annotations.json")
    assert [(im["video_id"], im["frame_index"]) for im in coco["images"]] == [(1, 10 + t) for t in range(FRAMES)]
    assert all(a["track_id"] == a["instance_id"] for a in coco["annotations"])
    data = json.loads((video / vis.VIS_FILE).read_text())
    (v,) = data["videos"]
    assert (v["name"], v["length"], v["frame_indices"]) == ("drawn", FRAMES, [10 + t for t in range(FRAMES)])
    assert v["file_names"] == [im["file_name"] for im in coco["images"]]
    tracks = {a["track_id"]: a for a in data["annotations"]}
    assert sorted(tracks) == [1, 2, 3] and [a["id"] for a in data["annotations"]] == [1, 2, 3]
    gone = [t for t, seg in enumerate(tracks[3]["segmentations"]) if seg is None]
    assert gone == [3, 4] and tracks[3]["areas"][3] is None and tracks[3]["bboxes"][4] is None
    first = next(a for a in coco["annotations"] if a["image_id"] == 1 and a["track_id"] == 3)
    assert tracks[3]["segmentations"][0] == first["segmentation"] and tracks[3]["category_id"] == 1
    assert data["categories"] == coco["categories"]
    report = validate_dataset(video)
    assert report.ok, report.errors
    assert "vis.json" in report.summary["files"]["annotations.json"]["outputs"]


@pytest.mark.parametrize("damage, expected", [
    (lambda d: d["annotations"][2]["segmentations"].__setitem__(3, d["annotations"][2]["segmentations"][2]),
     "track 3 of video 1: segmentations[3] is not null where the COCO file has no annotation"),
    (lambda d: d["annotations"][0].__setitem__("category_id", 2), "track 1 of video 1: category_id 2 vs 1"),
    (lambda d: d["annotations"].pop(1), "track 2 of video 1 is missing"),
    (lambda d: d["videos"][0]["file_names"].reverse(), "video 1: file_names differs"),
    (lambda d: d["annotations"][1]["areas"].pop(), "track 2 of video 1: areas needs one entry per frame"),
])
def test_validate_names_every_difference_between_vis_and_coco(video: Path, damage, expected: str) -> None:
    path = video / vis.VIS_FILE
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    report = validate_dataset(video)
    assert not report.ok and any(expected in e for e in report.errors), report.errors


def test_a_coco_file_without_video_fields_gets_no_vis_file_and_cannot_form_tracks(tmp_path: Path, video: Path) -> None:
    coco = dataset.load_coco(video / "annotations.json")
    for im in coco["images"]:
        del im["video_id"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "annotations.json").write_text(json.dumps(coco))
    assert vis.write(plain) == {} and not (plain / vis.VIS_FILE).exists()
    with pytest.raises(ValueError, match="no video_id"):
        vis.coco_to_vis(coco)
    twice = dataset.load_coco(video / "annotations.json")
    twice["images"][1]["frame_index"] = twice["images"][0]["frame_index"]
    with pytest.raises(ValueError, match="two images at one frame_index"):
        vis.coco_to_vis(twice)


def test_core_merge_writes_the_vis_file_of_a_video_dataset(tmp_path: Path) -> None:
    """``python -m blender_instseg.core merge`` (shards of a --frames run, an annotated scene) writes
    vis.json as the generator's own merge does, named after the config's video."""
    from blender_instseg.core.__main__ import main as core_main

    root = make_video_dataset(tmp_path / "video")
    assert core_main(["merge", str(root), "--out", str(tmp_path / "merged")]) == 0
    data = json.loads((tmp_path / "merged" / vis.VIS_FILE).read_text())
    assert [v["name"] for v in data["videos"]] == ["drawn"] and len(data["annotations"]) == 3
    assert validate_dataset(tmp_path / "merged").ok
