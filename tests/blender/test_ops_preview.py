"""Preview Labels and the dataset browser (real bpy; the preview's image comes from a real generator child)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

from blender_instseg.core import plan  # noqa: E402
from blender_instseg.core.formats import browse, dataset  # noqa: E402
from tests.blender.test_ui_panel import RecordingLayout  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEED = 5


@pytest.fixture(scope="module")
def out_root(addon, tmp_path_factory: pytest.TempPathFactory):
    """The panel set for tiny previews, the add-on's output folder in a temp folder; reset afterwards."""
    root = tmp_path_factory.mktemp("preview")
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(root / "out")
    s = bpy.context.scene.instseg
    s.num_images, s.seed, s.resolution, s.resolution_height = 3, SEED, 48, 0
    s.min_objects, s.max_objects, s.masks_only, s.val_fraction = 3, 5, False, 0.0
    s.object_source, s.distractors_dir, s.config_file, s.preview_index = "BUILTIN", "", "", 0
    s.dataset_dir = str(root / "dataset")
    yield root / "out"
    s.resolution, s.min_objects, s.max_objects, s.val_fraction, s.preview_index = 256, 5, 15, 0.1, 0
    s.browse_dir, s.dataset_dir = "", ""
    state = bpy.context.window_manager.instseg_job
    state.last_error = state.summary = state.kind = state.browse_error = ""
    state.has_preview = False


def _scene_state() -> dict[str, Any]:
    """What the artist would notice: objects, selection, active object, frame, file path and dirty flag."""
    scene = bpy.context.scene
    active = bpy.context.view_layer.objects.active
    return {"objects": sorted(o.name for o in bpy.data.objects), "meshes": len(bpy.data.meshes),
            "selected": sorted(o.name for o in scene.objects if o.select_get()),
            "active": active.name if active else None, "frame": scene.frame_current,
            "scenes": [sc.name for sc in bpy.data.scenes], "filepath": bpy.data.filepath,
            "dirty": bpy.data.is_dirty}


def _pixels(name: str) -> np.ndarray:
    """Image ``name`` as uint8 RGB, top row first (Blender stores rows bottom-up)."""
    image = bpy.data.images[name]
    w, h = image.size
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    return (np.flipud(px.reshape(h, w, 4))[..., :3] * 255 + 0.5).astype(np.uint8)


def _run_dir(out: Path) -> Path:
    (run,) = [p for p in (out / "preview").iterdir() if p.is_dir()]  # the earlier previews' folders are gone
    return run


def _labels(draw_panel: type) -> list[str]:
    log: list[tuple] = []
    draw_panel.draw(SimpleNamespace(layout=RecordingLayout(log, draw_panel.__name__)), bpy.context)
    return [entry[1] for entry in log if entry[0] == "label"]


def _check_preview(out: Path, index: int) -> dict[str, Any]:
    """The panel's counts and picture against the record the child wrote; returns the record."""
    from blender_instseg.blender.ui import overlay

    state = bpy.context.window_manager.instseg_job
    run = _run_dir(out)
    record = dataset.read_record(dataset.record_path(run, index))
    assert record["seed"] == plan.image_seed(SEED, index)  # image ``index`` of the dataset Generate would write
    anns = record["annotations"]
    reasons = Counter(h["reason"] for h in record["hidden"])
    assert state.has_preview and state.preview_index == index and state.preview_seed == str(record["seed"])
    assert state.preview_annotated == len(anns) > 0
    assert state.preview_small == sum(a["area"] < 32 * 32 for a in anns)
    assert (state.preview_outside_frame, state.preview_occluded, state.preview_too_little_visible) == (
        reasons["outside_frame"], reasons["occluded"], reasons["too_little_visible"])
    names = {c["id"]: c["name"] for c in json.loads((run / "config.json").read_text())["categories"]}
    first, n = Counter(names[a["category_id"]] for a in anns).most_common(1)[0]
    assert f"{n} {first}" in state.preview_categories
    assert state.summary.startswith(f"preview: image {index}, {len(anns)} labelled")
    # the picture: the child's image with its masks drawn by the overlay code, handed over exactly
    image = browse.open_folder(run).image(0)
    expected = overlay.draw_labels(image.rgb(), image.masks(), image.names())
    shown = _pixels(overlay.PREVIEW_NAME)
    assert shown.shape == (record["height"], record["width"], 3)
    assert np.abs(shown.astype(int) - expected).max() <= 1
    assert (shown != image.rgb()).any(axis=2)[image.masks().any(0)].mean() > 0.9  # the masks are coloured
    return record


def test_preview_renders_in_a_child_and_leaves_the_scene_alone(out_root: Path) -> None:
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("artist_mesh")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    mine = bpy.data.objects.new("ArtistThing", mesh)
    scene.collection.objects.link(mine)
    for obj in scene.objects:
        obj.select_set(False)
    mine.select_set(True)
    bpy.context.view_layer.objects.active = mine
    scene.frame_current = 7
    before = _scene_state()
    try:
        assert bpy.ops.instseg.preview_labels() == {"FINISHED"}
        assert _scene_state() == before  # the generator reset ITS Blender, never this one
        assert not any(name.startswith("inst_") for name in bpy.data.objects.keys())
        record = _check_preview(out_root, 0)
        assert (record["width"], record["height"]) == (48, 48)
        assert not (_run_dir(out_root) / "depth").exists() and not (_run_dir(out_root) / "annotations.json").exists()
        state = bpy.context.window_manager.instseg_job
        assert state.kind == "preview" and not state.running and state.last_error == ""
        assert state.preview_size == "48x48"
        from blender_instseg.blender.ui import panel

        labels = _labels(panel.INSTSEG_PT_dataset)
        assert f"{state.preview_annotated} labelled: {state.preview_categories}" in labels
        assert any(t.startswith("Hidden: ") and "out of frame" in t for t in labels)
        assert "Image Editor: InstSeg Preview" in labels
    finally:
        bpy.data.objects.remove(mine)
        bpy.data.meshes.remove(mesh)


def test_next_seed_previews_the_next_image(out_root: Path) -> None:
    from blender_instseg.blender.ui import overlay

    s = bpy.context.scene.instseg
    s.preview_index = 0
    assert bpy.ops.instseg.preview_labels() == {"FINISHED"}
    first = _pixels(overlay.PREVIEW_NAME)
    assert bpy.ops.instseg.preview_labels(step=1) == {"FINISHED"}
    assert s.preview_index == 1
    _check_preview(out_root, 1)
    assert not np.array_equal(first, _pixels(overlay.PREVIEW_NAME))
    assert s.seed == SEED  # the dataset's Seed is the artist's; Next Seed steps the image (its seed)


def test_a_large_dataset_is_previewed_small_with_its_counts_in_dataset_pixels(out_root: Path) -> None:
    s = bpy.context.scene.instseg
    s.resolution, s.resolution_height, s.preview_index = 320, 160, 0
    try:
        assert bpy.ops.instseg.preview_labels() == {"FINISHED"}
    finally:
        s.resolution, s.resolution_height = 48, 0
    state = bpy.context.window_manager.instseg_job
    record = dataset.read_record(dataset.record_path(_run_dir(out_root), 0))
    assert (record["width"], record["height"]) == (256, 128)
    assert state.preview_size == "256x128 (dataset 320x160)"
    scale = (320 * 160) / (256 * 128)
    assert state.preview_small == sum(a["area"] * scale < 32 * 32 for a in record["annotations"])
    config = json.loads((out_root / "preview" / "preview-config.json").read_text())
    assert config["objects"]["min_visible_pixels"] == round(4 / scale)  # the dataset's 4 px, in preview pixels


def test_this_files_collections_are_previewed_from_a_saved_copy(out_root: Path) -> None:
    from blender_instseg.blender.ops.dataset import scene_copy_path

    scene = bpy.context.scene
    root = bpy.data.collections.new("InstSeg")
    scene.collection.children.link(root)
    boxes = bpy.data.collections.new("Crates")
    root.children.link(boxes)
    mesh = bpy.data.meshes.new("crate")
    h = 0.5
    verts = [(x, y, z) for x in (-h, h) for y in (-h, h) for z in (-h, h)]
    mesh.from_pydata(verts, [], [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)])
    crate = bpy.data.objects.new("crate", mesh)
    boxes.objects.link(crate)
    s = scene.instseg
    s.object_source, s.blend_collection, s.preview_index = "COLLECTIONS", "", 0
    scene_copy_path().unlink(missing_ok=True)
    before = _scene_state()
    try:
        assert bpy.ops.instseg.preview_labels() == {"FINISHED"}
        assert _scene_state() == before
        assert scene_copy_path().is_file()  # the child read a copy; the open file was never saved
        state = bpy.context.window_manager.instseg_job
        assert state.preview_categories == f"{state.preview_annotated} Crates"
    finally:
        s.object_source = "BUILTIN"
        bpy.data.objects.remove(crate)
        bpy.data.meshes.remove(mesh)
        bpy.data.collections.remove(boxes)
        bpy.data.collections.remove(root)


def test_a_bad_setting_is_refused_before_anything_is_written(out_root: Path) -> None:
    s = bpy.context.scene.instseg
    s.preview_index, s.min_objects, s.max_objects = 1, 6, 2
    bpy.context.window_manager.instseg_job.kind = "generate"  # the last job was another section's
    preview = out_root / "preview"
    before = sorted(p.name for p in preview.iterdir()) if preview.is_dir() else None
    try:
        with pytest.raises(RuntimeError, match=r"Min Objects \(6\) is larger than Max Objects \(2\)"):
            bpy.ops.instseg.preview_labels(step=1)
    finally:
        s.min_objects, s.max_objects = 3, 5
    assert s.preview_index == 1  # Next Seed did not step
    assert (sorted(p.name for p in preview.iterdir()) if preview.is_dir() else None) == before
    state = bpy.context.window_manager.instseg_job
    assert state.kind == "preview" and state.last_error == "Min Objects (6) is larger than Max Objects (2)"
    from blender_instseg.blender.ui import panel

    labels = _labels(panel.INSTSEG_PT_dataset)
    assert "preview failed" in labels and state.last_error in labels  # in the Preview box, in one line


def test_preview_through_the_timer_and_cancel(out_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blender_instseg.blender.ops import jobs

    monkeypatch.setattr(jobs, "ASYNC_IN_BACKGROUND", True)
    state = bpy.context.window_manager.instseg_job
    bpy.context.scene.instseg.preview_index = 2
    for cancel in (False, True):
        assert bpy.ops.instseg.preview_labels() == {"FINISHED"}
        assert jobs.is_running() and state.running and state.kind == "preview"
        assert state.status == "preview: image 2"
        if cancel:
            assert bpy.ops.instseg.cancel_job() == {"FINISHED"}
        deadline = time.monotonic() + 60
        while jobs.tick() is not None:
            assert time.monotonic() < deadline, "the preview did not finish"
            time.sleep(0.05)
        assert not state.running and state.last_error == ""
        if cancel:
            assert state.status.startswith("preview cancelled")
        else:
            assert state.status == "preview finished"
            _check_preview(out_root, 2)


# --------------------------------------------------------------------------------------------
# the dataset browser


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three masks-only images with a val split, made by the generator's CLI."""
    out = tmp_path_factory.mktemp("browse") / "ds"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate.py"), "--out", str(out), "--num-images", "3",
                    "--seed", "11", "--resolution", "40", "--masks-only", "--no-depth", "--val-fraction", "0.34",
                    "--min-objects", "2", "--max-objects", "4", "--progress", "none"],
                   check=True, capture_output=True, cwd=ROOT)
    return out


def _expected(ds: Path, index: int) -> dict[str, Any]:
    record = dataset.read_record(dataset.record_path(ds, index))
    names = {c["id"]: c["name"] for c in dataset.read_dataset_config(ds)["categories"]}
    return {"file": record["file_name"], "split": record["split"], "annotated": len(record["annotations"]),
            "hidden": len(record["hidden"]), "categories": Counter(names[a["category_id"]] for a in record["annotations"])}


def _shown() -> dict[str, Any]:
    state = bpy.context.window_manager.instseg_job
    categories: Counter[str] = Counter()
    for part in state.browse_categories.split(", "):
        n, name = part.split(" ", 1)
        categories[name] = int(n)
    return {"file": state.browse_file, "split": state.browse_split, "annotated": state.browse_annotated,
            "hidden": state.browse_hidden, "categories": categories}


def test_the_browser_steps_through_a_generated_dataset(out_root: Path, tiny_dataset: Path) -> None:
    from blender_instseg.blender.ui import overlay, panel

    s = bpy.context.scene.instseg
    state = bpy.context.window_manager.instseg_job
    s.browse_dir, s.dataset_dir = "", str(tiny_dataset)  # empty: the Dataset section's Output Folder
    s.browse_index = 0
    assert state.browse_error == "" and state.browse_total == 3 and state.browse_position == 0
    assert _shown() == _expected(tiny_dataset, 0)
    assert tuple(bpy.data.images[overlay.BROWSER_NAME].size) == (40, 40)
    splits = set()
    for position in (1, 2, 2):  # Next at the last image stays there
        assert bpy.ops.instseg.browse_dataset(step=1) == {"FINISHED"}
        assert state.browse_position == position == s.browse_index
        assert _shown() == _expected(tiny_dataset, position)
        splits.add(state.browse_split)
    assert splits == {"train", "val"}
    assert bpy.ops.instseg.browse_dataset(step=-1) == {"FINISHED"}
    assert state.browse_position == 1 and _shown() == _expected(tiny_dataset, 1)
    s.browse_index = 7  # typed into the index field: the last image
    assert s.browse_index == 2 and _shown() == _expected(tiny_dataset, 2)
    labels = _labels(panel.INSTSEG_PT_dataset)
    assert f"3 of 3: {_expected(tiny_dataset, 2)['file']}" in labels
    assert "Image Editor: InstSeg Dataset" in labels


def test_a_bad_browse_folder_is_one_line_in_the_panel(out_root: Path, tmp_path: Path) -> None:
    from blender_instseg.blender.ui import panel

    s = bpy.context.scene.instseg
    state = bpy.context.window_manager.instseg_job
    s.browse_dir = str(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="Browse: not a folder: "):
        bpy.ops.instseg.browse_dataset()
    assert state.browse_error == f"not a folder: {tmp_path / 'nowhere'}" and state.browse_total == 0
    assert state.browse_error in _labels(panel.INSTSEG_PT_dataset)
    s.browse_dir = str(tmp_path)
    with pytest.raises(RuntimeError, match="has no records/ and no annotations.json"):
        bpy.ops.instseg.browse_dataset(step=1)
    assert "\n" not in state.browse_error
    assert list(tmp_path.iterdir()) == []  # looking changes nothing on disk
