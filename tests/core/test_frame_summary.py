"""core.evaluation.frame_summary: per-object totals across the frames of a Predict View range."""

from __future__ import annotations

import json

import pytest

from blender_instseg.core.evaluation.frame_summary import (
    FrameRecord, Found, Seen, headline, summarize, to_markdown, top_lines)


def _records() -> list[FrameRecord]:
    """Cube in view in frames 1-3, found in 1 and 3; Ball in view in 2-3, found in 2 only with two
    categories over time; Scatter [0] (an instance) in view in frame 3, never found. Given out of order."""
    return [
        FrameRecord(3, [Seen("Cube", "Cube", 40), Seen("Ball", "Ball", 10), Seen("Scatter [0]", "Scatter", 5)],
                    [Found("Cube", "Cube", "box", 0.8, 0.6, 0)], predictions=2, unmatched=1),
        FrameRecord(1, [Seen("Cube", "Cube", 50)], [Found("Cube", "Cube", "box", 0.9, 0.9, 0)], predictions=1),
        FrameRecord(2, [Seen("Cube", "Cube", 45), Seen("Ball", "Ball", 12)],
                    [Found("Ball", "Ball", "ball", 0.7, 0.75, 1)], predictions=3, unmatched=2),
    ]


def test_counts_frames_in_view_and_found_and_mean_iou_per_object() -> None:
    summary = summarize(_records())
    assert summary["frames"] == [1, 2, 3]
    objects = {o["instance"]: o for o in summary["objects"]}
    assert objects["Cube"]["in_view"] == [1, 2, 3] and objects["Cube"]["found"] == [1, 3]
    assert objects["Cube"]["mean_iou"] == pytest.approx(0.75) and objects["Cube"]["category"] == "box"
    assert objects["Ball"]["frames_in_view"] == 2 and objects["Ball"]["frames_found"] == 1
    assert objects["Scatter [0]"]["object"] == "Scatter" and objects["Scatter [0]"]["mean_iou"] is None
    assert objects["Scatter [0]"]["category"] is None
    # least found first: Scatter (0/1), Ball (1/2), Cube (2/3)
    assert [o["instance"] for o in summary["objects"]] == ["Scatter [0]", "Ball", "Cube"]
    assert (summary["object_frames_in_view"], summary["object_frames_found"]) == (6, 3)
    assert (summary["predictions"], summary["unmatched_predictions"]) == (6, 3)
    assert summary["per_frame"][1]["missed"] == ["Cube"] and summary["per_frame"][1]["unmatched"] == 2
    json.dumps(summary)  # JSON-ready


def test_the_category_is_the_class_predicted_most_often() -> None:
    recs = [FrameRecord(f, [Seen("A", "A", 9)], [Found("A", "A", cat, 0.5, 0.5, 0)])
            for f, cat in ((1, "cup"), (2, "bowl"), (3, "bowl"))]
    assert summarize(recs)["objects"][0]["category"] == "bowl"


def test_headline_top_lines_and_markdown() -> None:
    summary = summarize(_records())
    assert headline(summary) == "3 frames (1-3): 3 of 6 object-frames found, 3 unmatched predictions"
    assert top_lines(summary, 2) == [headline(summary), "Scatter [0]: found in 0/1 frames",
                                     "Ball: found in 1/2 frames, IoU 0.75 (ball)"]
    md = to_markdown(summary)
    assert "| Cube | box | 3 | 2 | 0.75 | 0.85 |" in md and "| Scatter [0] | - | 1 | 0 | - | - |" in md
    assert summarize([])["objects"] == [] and headline(summarize([])).startswith("0 frames (none)")
