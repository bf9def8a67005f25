"""core.evaluation.tracks: ID switches of greedy frame-to-frame linking, and their place in evaluate's report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blender_instseg.core.evaluation import evaluate as E
from blender_instseg.core.formats import dataset
from tests.core.video_fixtures import FRAMES, make_video_dataset


@pytest.fixture()
def gt(tmp_path: Path) -> dict:
    root = make_video_dataset(tmp_path / "video")
    dataset.merge_dataset([root])
    return dataset.load_coco(root / "annotations.json")


def _predictions(gt: dict, *, drop: tuple[int, int] | None = None, swap_at: int | None = None) -> list[dict]:
    """Ground truth as predictions (score 0.9), optionally without track ``drop[1]`` at frame ``drop[0]``,
    plus a low-score duplicate of every one (below the threshold: ignored)."""
    preds = []
    for a in gt["annotations"]:
        t = a["image_id"] - 1
        if drop is not None and (t, a["track_id"]) == drop:
            continue
        preds.append({"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                      "score": 0.9})
        preds.append({"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                      "score": 0.1})
    return preds


def test_perfect_predictions_switch_only_where_an_object_comes_back(gt: dict) -> None:
    m = E.evaluate(gt, _predictions(gt), plots=False)
    tr = m["tracks"]
    matched = sum(1 for _ in gt["annotations"])
    assert (tr["videos"], tr["gt_tracks"], tr["matched"]) == (1, 3, matched)
    assert tr["transitions"] == matched - 3
    # track 3 leaves at frames 3-4: frame-to-frame linking cannot know it is the same object again
    assert tr["id_switches"] == 1 and tr["pred_tracks"] == 4
    assert tr["consistency"] == pytest.approx(1 - 1 / (matched - 3))
    assert m["segm"]["AP"] == pytest.approx(1.0)  # per-frame AP as before


def test_a_missed_frame_breaks_the_chain_and_counts_one_more_switch(gt: dict) -> None:
    base = E.evaluate(gt, _predictions(gt), plots=False)["tracks"]
    tr = E.evaluate(gt, _predictions(gt, drop=(5, 2)), plots=False)["tracks"]
    assert tr["matched"] == base["matched"] - 1
    assert tr["transitions"] == base["transitions"] - 1  # a frame without a match is no transition ...
    assert tr["id_switches"] == base["id_switches"] + 1  # ... but the next match is another predicted track
    assert tr["per_video"] == [{"video_id": 1, "frames": FRAMES, "id_switches": 2,
                                "transitions": base["transitions"] - 1}]


def test_report_and_metrics_json_show_the_figure_only_for_videos(gt: dict, tmp_path: Path) -> None:
    m = E.evaluate(gt, _predictions(gt), out_dir=tmp_path / "rep", plots=False)
    stored = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert stored["tracks"]["id_switches"] == 1
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## Track consistency (videos)" in report and "| 1 | 3 | 4 |" in report
    for im in gt["images"]:
        del im["video_id"]
    plain = E.evaluate(gt, _predictions(gt), plots=False)
    assert "tracks" not in plain and "Track consistency" not in E.render_report(plain)
    assert m["segm"]["AP"] == plain["segm"]["AP"]
