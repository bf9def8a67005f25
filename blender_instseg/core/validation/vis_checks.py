"""``validate``'s check of a YouTube-VIS file (``vis*.json``, ``core.formats.vis``) against its COCO file.

The VIS file is a second view of the same labels, so it must say exactly what the COCO file says:
the same videos and frames in ``frame_index`` order, one track per (video, ``track_id``) with the
COCO category, and per frame the COCO annotation's segmentation, area and bbox, ``null`` exactly
where the track has no annotation. The check rebuilds the expected file from the COCO file
(``vis.coco_to_vis``) and compares them entry by entry, so every difference is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import read_json
from ..formats.vis import coco_to_vis, has_tracks
from .report import ValidationReport

#: differences reported per VIS file before the rest are only counted
MAX_PER_FILE = 20


def check_vis_file(report: ValidationReport, vis_file: Path, coco_file: Path, coco: dict) -> dict[str, Any]:
    """Compare ``vis_file`` with what ``coco`` says; errors go to ``report``. Returns a summary."""
    where = vis_file.name
    try:
        data = read_json(vis_file, "VIS file")
    except (ValueError, FileNotFoundError, OSError) as exc:
        report.error(str(exc))
        return {}
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("videos", "annotations", "categories")):
        report.error(f"{where}: needs the lists 'videos', 'annotations' and 'categories'")
        return {}
    if not has_tracks(coco):
        report.error(f"{where}: {coco_file.name} has no video frames (images without video_id / frame_index)")
        return {}
    try:
        expected = coco_to_vis(coco)
    except (ValueError, KeyError) as exc:
        report.error(f"{where}: {coco_file.name} cannot form tracks: {exc}")
        return {}
    problems: list[str] = []
    if data["categories"] != expected["categories"]:
        problems.append("categories differ from the COCO file's")
    got_videos = {v.get("id"): v for v in data["videos"] if isinstance(v, dict)}
    for video in expected["videos"]:
        have = got_videos.pop(video["id"], None)
        if have is None:
            problems.append(f"video {video['id']} is missing")
            continue
        for field in ("width", "height", "length", "file_names"):
            if have.get(field) != video[field]:
                problems.append(f"video {video['id']}: {field} differs from the COCO images")
    problems += [f"video {vid} is not in the COCO file" for vid in got_videos]
    got_tracks = {(a.get("video_id"), a.get("track_id")): a for a in data["annotations"] if isinstance(a, dict)}
    if len(got_tracks) != len(data["annotations"]):
        problems.append("two annotations share a (video_id, track_id), or one is not an object")
    ids = [a.get("id") for a in data["annotations"] if isinstance(a, dict)]
    if len(set(map(str, ids))) != len(ids):
        problems.append("annotation ids are not unique")
    for track in expected["annotations"]:
        key = (track["video_id"], track["track_id"])
        have = got_tracks.pop(key, None)
        label = f"track {key[1]} of video {key[0]}"
        if have is None:
            problems.append(f"{label} is missing")
            continue
        if have.get("category_id") != track["category_id"]:
            problems.append(f"{label}: category_id {have.get('category_id')} vs {track['category_id']} in the COCO file")
        for key_name in ("segmentations", "areas", "bboxes"):
            got, want = have.get(key_name), track[key_name]
            if not isinstance(got, list) or len(got) != len(want):
                problems.append(f"{label}: {key_name} needs one entry per frame ({len(want)})")
                continue
            for t, (g, w) in enumerate(zip(got, want)):
                if g != w:
                    state = "null" if g is None else "not null" if w is None else "different"
                    problems.append(f"{label}: {key_name}[{t}] is {state} where the COCO file "
                                    f"{'has no annotation' if w is None else 'has one'}")
                    break
    problems += [f"track {k[1]} of video {k[0]} has no annotation in the COCO file" for k in got_tracks]
    for p in problems[:MAX_PER_FILE]:
        report.error(f"{where}: {p}")
    for _ in problems[MAX_PER_FILE:]:
        report.error(f"{where}: (more differences)")
    return {"videos": len(data["videos"]), "tracks": len(data["annotations"])}
