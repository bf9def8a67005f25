"""Track consistency: do per-frame predictions keep following the same object through a video?

The models predict each frame on its own, so they have no identities. For ground truth with tracks
(an annotated animation: images with ``video_id`` and ``frame_index``, annotations with
``track_id``, ``scripts/annotate_scene.py``) the simplest tracker a user would write is applied to
the predictions, and its identity switches are counted the way MOT benchmarks count IDSW:

1. Predictions with ``score >= score_threshold`` are linked frame to frame, in ``frame_index``
   order: each takes, greedily by descending score, the unlinked prediction of the previous frame
   with the highest mask IoU if it is >= ``iou_threshold``, and its predicted track; otherwise it
   starts a new predicted track.
2. In each frame, the predictions are matched one-to-one to the ground truth by the same greedy
   rule (``matching.greedy_match``, IoU >= ``iou_threshold``, class-agnostic).
3. For each ground-truth track, every matched frame after its first matched frame is a
   *transition*; it is an *ID switch* when the predicted track differs from the one matched last
   time (frames without a match are skipped, so a miss is not a switch).

``consistency = 1 - id_switches / transitions`` (1.0: every object is followed by one predicted
track for as long as it is found; ``None`` without transitions). It complements per-frame mask
AP, which the same predictions also get; docs/evaluation.md.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from .matching import greedy_match


def has_tracks(gt: COCO) -> bool:
    """True for ground truth of videos: every image has ``video_id`` and ``frame_index``, every annotation ``track_id``."""
    images = list(gt.imgs.values())
    anns = list(gt.anns.values())
    return (bool(images) and all("video_id" in im and "frame_index" in im for im in images)
            and all("track_id" in a for a in anns))


def _iou(a: list[Any], b: list[Any]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(a, b, [0] * len(b)), np.float64).reshape(len(a), len(b))


def track_consistency(gt: COCO, dt: COCO, *, score_threshold: float = 0.5, iou_threshold: float = 0.5) -> dict[str, Any]:
    """ID switches of greedy frame-to-frame linking of the predictions (see the module doc)."""
    videos: dict[Any, list[dict]] = defaultdict(list)
    for im in gt.imgs.values():
        videos[im["video_id"]].append(im)
    switches = transitions = matched = 0
    next_track = 0
    gt_tracks: set[tuple[Any, Any]] = set()
    per_video = []
    for vid in sorted(videos, key=str):
        frames = sorted(videos[vid], key=lambda im: im["frame_index"])
        last: dict[Any, int] = {}  # gt track -> predicted track matched last time
        prev_tracks: list[int] = []
        prev_rles: list[Any] = []
        v_switches = v_transitions = 0
        for im in frames:
            dets = [d for d in dt.imgToAnns.get(im["id"], []) if d["score"] >= score_threshold]
            scores = np.array([d["score"] for d in dets], np.float64)
            rles = [dt.annToRLE(d) for d in dets]
            tracks = [-1] * len(dets)
            link = greedy_match(_iou(rles, prev_rles), scores, iou_threshold)
            for m in link.matches:
                tracks[m.prediction] = prev_tracks[m.instance_id]
            for k in range(len(dets)):
                if tracks[k] < 0:
                    tracks[k] = next_track
                    next_track += 1
            gts = [a for a in gt.imgToAnns.get(im["id"], []) if not a.get("iscrowd", 0)]
            gt_tracks.update((vid, a["track_id"]) for a in gts)
            found = greedy_match(_iou(rles, [gt.annToRLE(a) for a in gts]), scores, iou_threshold)
            for m in found.matches:
                matched += 1
                track = gts[m.instance_id]["track_id"]
                if track in last:
                    v_transitions += 1
                    v_switches += last[track] != tracks[m.prediction]
                last[track] = tracks[m.prediction]
            prev_tracks, prev_rles = tracks, rles
        switches += v_switches
        transitions += v_transitions
        per_video.append({"video_id": vid, "frames": len(frames), "id_switches": v_switches,
                          "transitions": v_transitions})
    return {
        "videos": len(videos),
        "gt_tracks": len(gt_tracks),
        "pred_tracks": next_track,
        "matched": matched,
        "transitions": transitions,
        "id_switches": switches,
        "consistency": (1.0 - switches / transitions) if transitions else None,
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "per_video": per_video,
    }
