"""Video instance segmentation in the YouTube-VIS layout, built from a merged COCO file with tracks.

An annotated animation (``scripts/annotate_scene.py``) has COCO images with ``video_id`` and
``frame_index`` and annotations with ``track_id`` (the object's instance id, the same in every
frame). Video models and their tools (YouTube-VIS / OVIS loaders, mmdet's and detectron2's VIS
readers) want one entry per object track instead:

- ``videos``: ``{id, name, width, height, length, file_names, frame_indices}``, frames in
  ``frame_index`` order;
- ``annotations``: one per (video, track): ``{id, video_id, track_id, category_id, iscrowd,
  segmentations, areas, bboxes, width, height, length}``, the three lists one entry per frame of
  the video, ``null`` where the object has no visible pixel (outside the picture or hidden);
- ``categories``: the COCO file's.

``annotations.json`` -> ``vis.json`` (and ``annotations_<split>.json`` -> ``vis_<split>.json``),
written atomically with the same segmentation encoding as the COCO file.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_json
from .dataset import ANNOTATIONS_FILE, load_coco

VIS_FILE = "vis.json"


def vis_name(coco_name: str) -> str:
    """``annotations.json`` -> ``vis.json``, ``annotations_val.json`` -> ``vis_val.json``."""
    return "vis" + coco_name[len("annotations"):]


def has_tracks(coco: dict) -> bool:
    """True when the COCO file describes videos: its images carry ``video_id`` and ``frame_index``."""
    images = coco.get("images", [])
    return bool(images) and all("video_id" in im and "frame_index" in im for im in images)


def video_frames(coco: dict) -> dict[Any, list[dict]]:
    """video_id -> its COCO images in frame order; ``ValueError`` for an image without video fields
    or two images of one video at one frame."""
    videos: dict[Any, list[dict]] = defaultdict(list)
    for im in coco["images"]:
        if "video_id" not in im or "frame_index" not in im:
            raise ValueError(f"image {im.get('id')} has no video_id / frame_index: not a video dataset")
        videos[im["video_id"]].append(im)
    for vid, frames in videos.items():
        frames.sort(key=lambda im: im["frame_index"])
        seen = [im["frame_index"] for im in frames]
        if len(set(seen)) != len(seen):
            raise ValueError(f"video {vid} has two images at one frame_index")
    return dict(sorted(videos.items()))


def coco_to_vis(coco: dict, name: str = "") -> dict:
    """The YouTube-VIS dict of a COCO dict with tracks (see the module doc)."""
    videos = video_frames(coco)
    position: dict[Any, tuple[Any, int]] = {}
    out_videos = []
    for vid, frames in videos.items():
        for t, im in enumerate(frames):
            position[im["id"]] = (vid, t)
        first = frames[0]
        out_videos.append({"id": vid, "name": name or f"video_{vid}", "width": first["width"], "height": first["height"],
                           "length": len(frames), "file_names": [im["file_name"] for im in frames],
                           "frame_indices": [im["frame_index"] for im in frames]})
    tracks: dict[tuple[Any, Any], dict] = {}
    for ann in coco["annotations"]:
        if "track_id" not in ann:
            raise ValueError(f"annotation {ann.get('id')} has no track_id")
        vid, t = position[ann["image_id"]]
        key = (vid, ann["track_id"])
        n = len(videos[vid])
        track = tracks.get(key)
        if track is None:
            first = videos[vid][0]
            track = tracks[key] = {"video_id": vid, "track_id": ann["track_id"], "category_id": ann["category_id"],
                                   "iscrowd": ann.get("iscrowd", 0), "segmentations": [None] * n,
                                   "areas": [None] * n, "bboxes": [None] * n,
                                   "width": first["width"], "height": first["height"], "length": 1}
        elif track["category_id"] != ann["category_id"]:
            raise ValueError(f"track {ann['track_id']} of video {vid} changes its category")
        if track["segmentations"][t] is not None:
            raise ValueError(f"track {ann['track_id']} appears twice in one frame of video {vid}")
        track["segmentations"][t] = ann["segmentation"]
        track["areas"][t] = ann["area"]
        track["bboxes"][t] = ann["bbox"]
    annotations = []
    for k, key in enumerate(sorted(tracks, key=lambda k: (k[0], k[1])), start=1):
        annotations.append({"id": k, **tracks[key]})
    return {"info": {**coco.get("info", {}), "format": "YouTube-VIS"}, "videos": out_videos,
            "annotations": annotations, "categories": coco["categories"]}


def write(dataset_root: str | Path, name: str = "") -> dict[str, Path]:
    """``vis*.json`` beside every ``annotations*.json`` of a merged dataset whose images are video frames."""
    root = Path(dataset_root)
    written: dict[str, Path] = {}
    for coco_file in sorted(root.glob("annotations*.json")):
        coco = load_coco(coco_file)
        if not has_tracks(coco):
            continue
        label = "vis" if coco_file.name == ANNOTATIONS_FILE else vis_name(coco_file.stem)
        written[label] = atomic_write_json(root / vis_name(coco_file.name), coco_to_vis(coco, name))
    return written
