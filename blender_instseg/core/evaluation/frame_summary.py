"""Predict View over a frame range: what each object or instance got, across the frames.

Predict View matches each frame's predictions to the rendered objects on its own
(``matching.match_to_id_map``); this module adds the frames up, per object or instance, so an artist
sees which ones the model keeps finding and which it loses (in view but not found) as the
animation plays. It is bpy-free: the Blender side hands in one ``FrameRecord`` per frame.

"In view" means the object has at least one pixel in that frame's Object Index render (visible,
not hidden behind others and inside the frame); "found" means a prediction matched it (IoU >= the
Match IoU, one-to-one, greedy by score). A missed frame is one in view and not found.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Seen:
    """One object or instance with pixels in a frame."""

    instance: str  # the object's name, or "instancer [k]" for the k-th instance an instancer makes
    object_name: str  # the object to select for it (for an instance: its instancer)
    pixels: int


@dataclass
class Found:
    """A prediction matched to an object or instance in a frame."""

    instance: str
    object_name: str
    category: str  # the predicted class name
    score: float
    iou: float
    prediction: int  # its index in that frame's results file


@dataclass
class FrameRecord:
    """What one frame's prediction came to."""

    frame: int
    seen: list[Seen] = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    predictions: int = 0  # predictions kept (above the score threshold)
    unmatched: int = 0  # kept predictions matched to no object


def summarize(records: list[FrameRecord]) -> dict[str, Any]:
    """Per-object totals and the per-frame lists (JSON-ready).

    Objects are listed least found first (the ones to look at), then by name. ``category`` is the
    class predicted most often for the object (the earliest frame's on a tie), None if never found.
    """
    in_view: dict[str, list[int]] = {}
    object_of: dict[str, str] = {}
    found: dict[str, list[Found]] = {}
    found_frames: dict[str, list[int]] = {}
    for rec in sorted(records, key=lambda r: r.frame):
        for s in rec.seen:
            in_view.setdefault(s.instance, []).append(rec.frame)
            object_of[s.instance] = s.object_name
        for f in rec.found:
            found.setdefault(f.instance, []).append(f)
            found_frames.setdefault(f.instance, []).append(rec.frame)
            object_of.setdefault(f.instance, f.object_name)
    objects = []
    for name in sorted(set(in_view) | set(found)):
        hits = found.get(name, [])
        seen = in_view.get(name, [])
        objects.append({
            "instance": name,
            "object": object_of[name],
            "category": Counter(h.category for h in hits).most_common(1)[0][0] if hits else None,
            "frames_in_view": len(seen),
            "frames_found": len(hits),
            "found_fraction": len(hits) / len(seen) if seen else 0.0,
            "mean_iou": sum(h.iou for h in hits) / len(hits) if hits else None,
            "mean_score": sum(h.score for h in hits) / len(hits) if hits else None,
            "in_view": seen,
            "found": found_frames.get(name, []),
        })
    objects.sort(key=lambda o: (o["found_fraction"], o["instance"]))
    per_frame = []
    for rec in sorted(records, key=lambda r: r.frame):
        hit = {f.instance for f in rec.found}
        per_frame.append({
            "frame": rec.frame,
            "predictions": rec.predictions,
            "unmatched": rec.unmatched,
            "matched": [asdict(f) for f in rec.found],
            "missed": sorted(s.instance for s in rec.seen if s.instance not in hit),
        })
    return {
        "frames": [r["frame"] for r in per_frame],
        "predictions": sum(r.predictions for r in records),
        "unmatched_predictions": sum(r.unmatched for r in records),
        "object_frames_in_view": sum(o["frames_in_view"] for o in objects),
        "object_frames_found": sum(o["frames_found"] for o in objects),
        "objects": objects,
        "per_frame": per_frame,
    }


def object_line(obj: dict[str, Any]) -> str:
    """One object's result in a line: ``Cube: found in 3/4 frames, IoU 0.82 (cube)``."""
    text = f"{obj['instance']}: found in {obj['frames_found']}/{obj['frames_in_view']} frames"
    if obj["mean_iou"] is not None:
        text += f", IoU {obj['mean_iou']:.2f}"
    if obj["category"]:
        text += f" ({obj['category']})"
    return text


def headline(summary: dict[str, Any]) -> str:
    """The run in one line, for the status bar and the panel."""
    frames = summary["frames"]
    span = f"{frames[0]}-{frames[-1]}" if frames else "none"
    return (f"{len(frames)} frames ({span}): {summary['object_frames_found']} of "
            f"{summary['object_frames_in_view']} object-frames found, "
            f"{summary['unmatched_predictions']} unmatched predictions")


def top_lines(summary: dict[str, Any], most: int = 5) -> list[str]:
    """The headline and the ``most`` least-found objects (the panel shows these)."""
    return [headline(summary), *(object_line(o) for o in summary["objects"][:most])]


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def to_markdown(summary: dict[str, Any]) -> str:
    """A short report: the headline and one table row per object or instance."""
    lines = ["# Predict View over frames", "", headline(summary), "",
             "| object / instance | category | frames in view | frames found | mean IoU | mean score |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for o in summary["objects"]:
        lines.append(f"| {_cell(o['instance'])} | {_cell(o['category'])} | {o['frames_in_view']} | "
                     f"{o['frames_found']} | {_cell(o['mean_iou'])} | {_cell(o['mean_score'])} |")
    lines += ["", "Found: a prediction matched the object (IoU >= Match IoU). In view: it has pixels in "
              "that frame's render. Per-frame matches are in summary.json (`per_frame`)."]
    return "\n".join(lines) + "\n"
