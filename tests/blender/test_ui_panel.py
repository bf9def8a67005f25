"""Every panel's draw() runs against a recording layout that checks property, operator and icon names.

Panels never draw in module mode (no window loop), so draw() is called directly with a layout
that records calls and fails on a property the data does not have, an operator that is not
registered, or an icon Blender does not know: the typos that would otherwise only show up as a
broken panel in a real Blender session.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402
import addon_utils  # noqa: E402

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class RecordingLayout:
    """Stands in for bpy.types.UILayout: records calls and validates every name it is given."""

    def __init__(self, log: list[tuple], path: str = "layout") -> None:
        self._log = log
        self._path = path
        self.use_property_split = False
        self.use_property_decorate = True
        self.enabled = True
        self.active = True
        self.alert = False
        self.scale_y = 1.0

    def _child(self, kind: str) -> "RecordingLayout":
        self._log.append((kind, self._path))
        return RecordingLayout(self._log, f"{self._path}.{kind}")

    def row(self, **kw: Any) -> "RecordingLayout":
        return self._child("row")

    def column(self, **kw: Any) -> "RecordingLayout":
        return self._child("column")

    def box(self) -> "RecordingLayout":
        return self._child("box")

    def split(self, **kw: Any) -> "RecordingLayout":
        return self._child("split")

    def grid_flow(self, **kw: Any) -> "RecordingLayout":
        return self._child("grid_flow")

    @staticmethod
    def _check_icon(icon: str | None) -> None:
        if icon is not None:
            assert icon in ICONS, f"unknown icon {icon!r}"

    def prop(self, data: Any, name: str, **kw: Any) -> None:
        assert name in data.bl_rna.properties.keys(), f"{type(data).__name__} has no property {name!r}"
        assert hasattr(data, name)
        self._check_icon(kw.get("icon"))
        self._log.append(("prop", type(data).__name__, name))

    def operator(self, idname: str, **kw: Any) -> SimpleNamespace:
        module, _, func = idname.partition(".")
        op = getattr(getattr(bpy.ops, module), func)
        op.get_rna_type()  # raises KeyError for an operator that is not registered
        self._check_icon(kw.get("icon"))
        self._log.append(("operator", idname))
        props = SimpleNamespace()
        self._log.append(("operator_props", idname, props))  # what the panel sets on the button
        return props

    def label(self, text: str = "", icon: str | None = None, **kw: Any) -> None:
        assert isinstance(text, str)
        self._check_icon(icon)
        self._log.append(("label", text))

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:  # noqa: A002
        assert 0.0 <= factor <= 1.0 and type in {"BAR", "RING"}
        self._log.append(("progress", factor, text))

    def separator(self, **kw: Any) -> None:
        self._log.append(("separator",))


@pytest.fixture(scope="module")
def addon():
    mod = addon_utils.enable("blender_instseg", default_set=True)
    assert mod is not None
    from blender_instseg.blender.ui import panel

    yield panel
    addon_utils.disable("blender_instseg", default_set=True)


def _draw_all(panel_module: Any) -> list[tuple]:
    log: list[tuple] = []
    for cls in panel_module.classes:
        layout = RecordingLayout(log, cls.__name__)
        cls.draw(SimpleNamespace(layout=layout), bpy.context)
    return log


def test_idle_panels_show_every_setting(addon: Any) -> None:
    from blender_instseg.blender import config_props

    state = bpy.context.window_manager.instseg_job
    state.kind = ""
    log = _draw_all(addon)
    drawn: dict[str, set[str]] = {}
    for entry in log:
        if entry[0] == "prop":
            drawn.setdefault(entry[1], set()).add(entry[2])
    s = bpy.context.scene.instseg
    # asset_categories: one box per Asset Folder category, drawn from its items (test below)
    settings = {p for p in s.bl_rna.properties.keys()
                if p not in ("rna_type", "name", "generator", "asset_categories")}
    assert drawn["InstSegSettings"] == settings  # every setting is reachable from the panel, and nothing else
    for section in config_props.SECTIONS:  # and every field of every generator config section
        group = getattr(s.generator, section)
        fields = {p for p in group.bl_rna.properties.keys() if p not in ("rna_type", "name")}
        assert fields and drawn[type(group).__name__] == fields, section
    ops = {entry[1] for entry in log if entry[0] == "operator"}
    assert {"instseg.generate_dataset", "instseg.train", "instseg.evaluate", "instseg.predict_view",
            "instseg.check_python", "instseg.clear_overlay", "instseg.restore_selection", "instseg.load_config",
            "instseg.save_config", "instseg.annotate_scene"} <= ops
    assert not any(entry[0] == "progress" for entry in log)
    sections = {cls.bl_label for cls in addon.classes if getattr(cls, "bl_parent_id", "") == "INSTSEG_PT_main"}
    assert sections == {"Dataset", "Annotate This Scene", "Training", "Evaluation", "Prediction"}
    groups = {cls.bl_label for cls in addon.classes if getattr(cls, "bl_parent_id", "") == "INSTSEG_PT_dataset"}
    assert groups == {"Objects & Source", "Camera", "Lights", "Materials", "World & Backplate", "Lens & Sensor",
                      "Physics", "Sequences", "Render", "Output"}
    assert {cls.bl_category for cls in addon.classes} == {"InstSeg"}


def test_running_job_shows_progress_loss_eta_and_cancel(addon: Any) -> None:
    state = bpy.context.window_manager.instseg_job
    state.kind, state.running, state.progress, state.status = "train", True, 0.25, "train: 50/200"
    state.loss, state.has_loss, state.eta_s = 0.4321, True, 125.0
    try:
        log = _draw_all(addon)
    finally:
        state.running = False
    bars = [e for e in log if e[0] == "progress"]
    assert len(bars) == 1 and bars[0][1] == pytest.approx(0.25)
    assert "train: 50/200" in bars[0][2] and "loss 0.432" in bars[0][2] and "2:05 left" in bars[0][2]
    assert ("operator", "instseg.cancel_job") in log


def test_error_and_results_are_drawn(addon: Any) -> None:
    state = bpy.context.window_manager.instseg_job
    state.kind, state.running = "evaluate", False
    state.last_error = "evaluate failed (exit code 3): error: torch is not installed in /usr/bin/python3"
    state.has_metrics, state.mask_ap, state.mask_ap50, state.boundary_ap = True, 0.5, 0.75, 0.25
    state.worst_images.clear()
    w = state.worst_images.add()
    w.file_name, w.n_missed, w.n_false_pos = "images/000003.png", 2, 1
    state.matched.clear()
    m = state.matched.add()
    m.object_name, m.category, m.score, m.iou = "Cube", "cube", 0.9, 0.8
    state.missed.clear()
    state.missed.add().object_name = "Torus"
    try:
        log = _draw_all(addon)
    finally:
        state.has_metrics = False
        state.last_error = ""
        state.worst_images.clear()
        state.matched.clear()
        state.missed.clear()
    labels = [e[1] for e in log if e[0] == "label"]
    assert "evaluate failed" in labels
    assert any("torch is not installed" in t for t in labels)
    assert any(t.startswith("Mask AP ") and "0.500" in t for t in labels)
    assert any("Boundary AP" in t and "0.250" in t for t in labels)
    assert any("images/000003.png: 2 missed, 1 false" == t for t in labels)
    assert "Cube: cube 0.90 (IoU 0.80)" in labels and "Torus" in labels
    assert ("operator", "instseg.open_report") in log


def test_progress_falls_back_to_a_label_without_layout_progress(addon: Any) -> None:
    class OldLayout:  # a Blender 3.x layout: no progress()
        def __init__(self) -> None:
            self.labels: list[str] = []

        def label(self, text: str = "", icon: str | None = None) -> None:
            self.labels.append(text)

    old = OldLayout()
    addon.draw_progress(old, 0.5, "generate: 5/10")
    assert old.labels == ["generate: 5/10 (50%)"]


def test_unregister_leaves_nothing_behind(addon: Any) -> None:
    from blender_instseg import blender as layer

    names = [cls.__name__ for cls in layer.registered_classes()]
    assert "INSTSEG_PT_prediction" in names and "INSTSEG_OT_predict_view" in names
    addon_utils.disable("blender_instseg", default_set=True)
    try:
        assert layer.registered_classes() == ()
        for name in names:
            assert not hasattr(bpy.types, name), name
        assert not hasattr(bpy.types.Scene, "instseg")
        assert not hasattr(bpy.types.WindowManager, "instseg_job")
        assert not hasattr(bpy.types.Collection, "instseg")
        assert not hasattr(bpy.ops.instseg, "predict_view") or not _op_registered("instseg.predict_view")
        from blender_instseg.blender.ops import jobs

        assert not jobs.is_running()
        assert not any(bpy.app.timers.is_registered(f) for f in (jobs.tick,))
    finally:
        assert addon_utils.enable("blender_instseg", default_set=True) is not None


def _op_registered(idname: str) -> bool:
    module, _, func = idname.partition(".")
    try:
        getattr(getattr(bpy.ops, module), func).get_rna_type()
        return True
    except (KeyError, AttributeError):
        return False


def test_asset_folder_source_shows_its_categories_and_reaches_the_generator(addon: Any, tmp_path: Any) -> None:
    from blender_instseg.blender.ops.dataset import generate_args

    folder = tmp_path / "assets"
    (folder / "mugs").mkdir(parents=True)
    for name in ("mugs/a.glb", "mugs/b.obj", "bottle.ply"):
        (folder / name).write_bytes(b"")  # the panel only reads names; the generator imports them
    s = bpy.context.scene.instseg
    s.min_objects, s.max_objects = 1, 3  # other tests leave these anywhere
    s.object_source, s.assets_dir, s.placement, s.real_size = "FOLDER", str(folder), "upright", True
    s.distractors_dir, s.max_distractors = str(folder / "mugs"), 2
    try:
        labels = [entry[1] for entry in _draw_all(addon) if entry[0] == "label"]
        assert "2 categories, 3 files" in labels and "mugs: 2 files" in labels and "bottle: 1 file" in labels
        args = generate_args(bpy.context)
        assert args[args.index("--assets") + 1] == str(folder)
        assert args[args.index("--placement") + 1] == "upright" and "--real-size" in args
        assert args[args.index("--distractors") + 1] == str(folder / "mugs")
        assert args[args.index("--max-distractors") + 1] == "2"
        s.assets_dir = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
        labels = [entry[1] for entry in _draw_all(addon) if entry[0] == "label"]
        assert any("holds no file Blender can import" in text for text in labels)
        s.assets_dir = ""
        with pytest.raises(ValueError, match="no Asset Folder"):
            generate_args(bpy.context)
    finally:
        s.object_source, s.assets_dir, s.placement, s.real_size = "BUILTIN", "", "free", False
        s.distractors_dir = ""


def test_asset_folder_categories_get_the_collections_boxes_capped_for_a_huge_folder(addon: Any, tmp_path: Any) -> None:
    folder = tmp_path / "assets"
    (folder / "mugs").mkdir(parents=True)
    for name in ("mugs/a.glb", "bottle.ply"):
        (folder / name).write_bytes(b"")  # the panel only reads names
    s = bpy.context.scene.instseg
    s.asset_categories.clear()
    s.object_source, s.assets_dir = "FOLDER", str(folder)  # choosing the folder gives its categories items
    try:
        assert sorted(item.name for item in s.asset_categories) == ["bottle", "mugs"]
        log = _draw_all(addon)
        assert ("label", "bottle") in log and ("label", "mugs") in log
        drawn = {entry[2] for entry in log if entry[0] == "prop" and entry[1] == "AssetCategorySettings"}
        assert drawn == {"own_count", "count", "placement", "size", "physics"}  # the collections' widgets
        # a category added to the folder since: draw code cannot add its item, a button does
        (folder / "cup.stl").write_bytes(b"")
        log = _draw_all(addon)
        assert ("operator", "instseg.add_asset_categories") in log and ("label", "cup") not in log
        assert bpy.ops.instseg.add_asset_categories() == {"FINISHED"}
        log = _draw_all(addon)
        assert ("label", "cup") in log and ("operator", "instseg.add_asset_categories") not in log
        # a huge folder: 24 boxes, then how many more keep the defaults
        huge = tmp_path / "huge"
        huge.mkdir()
        for i in range(30):
            (huge / f"c{i:02d}.obj").write_bytes(b"")
        s.assets_dir = str(huge)
        log = _draw_all(addon)
        boxes = [e for e in log if e[0] == "prop" and e[1] == "AssetCategorySettings" and e[2] == "placement"]
        assert len(boxes) == 24 and ("label", "c23") in log and ("label", "c24") not in log
        assert ("label", "... and 6 more categories (they keep the defaults)") in log
        assert {"bottle", "mugs", "cup"} < {item.name for item in s.asset_categories}  # the first folder's kept
    finally:
        s.object_source, s.assets_dir = "BUILTIN", ""
        s.asset_categories.clear()


def test_this_files_collections_source_shows_its_categories_and_hands_a_copy_to_the_generator(addon: Any) -> None:
    from blender_instseg.blender.ops.dataset import generate_args, save_scene_copy, scene_copy_path

    scene = bpy.context.scene
    root = bpy.data.collections.new("InstSeg")
    scene.collection.children.link(root)
    cups = bpy.data.collections.new("Cups")
    root.children.link(cups)
    clutter = bpy.data.collections.new("Clutter")
    clutter["instseg_role"] = "distractor"
    root.children.link(clutter)
    mesh = bpy.data.meshes.new("cup")
    made = [bpy.data.objects.new(name, mesh) for name in ("cup_a", "cup_b", "junk")]
    cups.objects.link(made[0])
    cups.objects.link(made[1])
    clutter.objects.link(made[2])
    s = scene.instseg
    s.min_objects, s.max_objects = 1, 3  # other tests leave these anywhere
    s.object_source = "COLLECTIONS"
    try:
        labels = [entry[1] for entry in _draw_all(addon) if entry[0] == "label"]
        assert "1 categories from collection 'InstSeg'" in labels and "Cups: 2 templates" in labels
        assert "distractors: 1 templates" in labels
        args = generate_args(bpy.context)
        assert args[args.index("--blend") + 1] == str(scene_copy_path())
        path_before, dirty_before = bpy.data.filepath, bpy.data.is_dirty
        copy = save_scene_copy()
        assert copy.is_file() and (bpy.data.filepath, bpy.data.is_dirty) == (path_before, dirty_before)
        # per-category settings: widgets over the collection's instseg_* custom properties
        log = _draw_all(addon)
        assert ("label", "Cups") in log and ("label", "Clutter") in log
        drawn = {entry[2] for entry in log if entry[0] == "prop" and entry[1] == "CategorySettings"}
        assert drawn == {"role", "own_count", "count", "placement", "size", "physics"}
        from blender_instseg.blender.scene import blend_source

        assert cups.instseg.role == "target" and clutter.instseg.role == "distractor"
        assert (cups.instseg.placement, cups.instseg.size, cups.instseg.physics) == ("DEFAULT",) * 3
        cups.instseg.own_count = True
        cups.instseg.count = (4, 2)  # kept as low <= high
        cups.instseg.placement, cups.instseg.size, cups.instseg.physics = "upright", "ON", "OFF"
        assert cups["instseg_count"].to_list() == [2, 4] and cups["instseg_placement"] == "upright"
        assert bool(cups["instseg_real_size"]) is True and bool(cups["instseg_physics"]) is False
        groups, where = blend_source.parent_groups(bpy.data.collections, [scene], "")
        spec = blend_source.describe(groups, where)
        assert spec.per_category == {"Cups": {"placement": "upright", "real_size": True, "physics": False,
                                              "count": [2, 4]}}
        cups.instseg.placement = cups.instseg.size = cups.instseg.physics = "DEFAULT"
        cups.instseg.own_count = False
        assert not any(k.startswith("instseg_") for k in cups.keys())
        clutter.instseg.role = "ignore"
        assert clutter["instseg_role"] == "ignore"
        assert "distractors: 1 templates" not in [e[1] for e in _draw_all(addon) if e[0] == "label"]
        s.blend_collection = "Nope"
        labels = [entry[1] for entry in _draw_all(addon) if entry[0] == "label"]
        assert "no collection named 'Nope'" in labels
    finally:
        s.object_source, s.blend_collection = "BUILTIN", ""
        for obj in made:
            bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        for coll in (cups, clutter, root):
            bpy.data.collections.remove(coll)
        scene_copy_path().unlink(missing_ok=True)


def test_annotate_this_scene_section_says_what_is_labelled_and_passes_its_settings(addon: Any, tmp_path: Any) -> None:
    from blender_instseg.blender.ops.annotate import annotate_args, done_summary
    from blender_instseg.core.formats import vis

    scene = bpy.context.scene
    meshes_before = sum(1 for obj in scene.objects if obj.type == "MESH")  # the start-up file's cube
    root = bpy.data.collections.new("InstSeg")
    scene.collection.children.link(root)
    cars = bpy.data.collections.new("Cars")
    root.children.link(cars)
    mesh = bpy.data.meshes.new("car")
    made = [bpy.data.objects.new(name, mesh) for name in ("car_a", "car_b", "tagged", "floor")]
    cars.objects.link(made[0])
    cars.objects.link(made[1])
    for obj in made[2:]:
        scene.collection.objects.link(obj)
    made[2]["instseg_category"] = "Cars"
    camera = scene.camera
    scene.camera = None
    s = scene.instseg
    s.annotate_dir, s.annotate_frame_start, s.annotate_frame_end = "", 2, 5
    s.annotate_masks_only, s.annotate_samples, s.annotate_uncategorized = True, 0, "ignore"
    try:
        log = _draw_all(addon)
        labels = [e[1] for e in log if e[0] == "label"]
        assert "categories from collection 'InstSeg':" in labels and "  Cars: target, 2 objects" in labels
        assert "1 object with the 'instseg_category' property" in labels and f"{meshes_before + 1} without a category" in labels
        assert "frames 2-5" in labels
        assert "The scene has no active camera: set Scene > Camera" in labels
        assert any(t.startswith("-> ") and t.rstrip().endswith("annotated/" + bpy.path.clean_name(scene.name))
                   for t in labels)
        props = next(e[2] for e in log if e[0] == "operator_props" and e[1] == "instseg.annotate_scene")
        assert (props.frame_start, props.frame_end, props.masks_only, props.uncategorized) == (2, 5, True, "ignore")
        with pytest.raises(ValueError, match="no active camera"):
            annotate_args(bpy.context, tmp_path)
        scene.camera = camera or bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
        args = annotate_args(bpy.context, tmp_path, frame_start=2, frame_end=5, uncategorized="ignore")
        assert args[args.index("--frames") + 1] == "2-5" and args[args.index("--uncategorized") + 1] == "ignore"
        with pytest.raises(ValueError, match=r"End \(1\) is before Start \(2\)"):
            annotate_args(bpy.context, tmp_path, frame_start=2, frame_end=1)
        labels = [e[1] for e in _draw_all(addon) if e[0] == "label"]
        assert not any("no active camera" in t for t in labels)
        # after the run: the dataset folder and whether the video JSON was written
        assert done_summary(tmp_path, {"images": 4}) == f"annotated: 4 frame(s) rendered into {tmp_path}; no vis.json"
        (tmp_path / vis.VIS_FILE).write_text("{}")
        assert done_summary(tmp_path, {"images": 4}).endswith("; vis.json written")
        state = bpy.context.window_manager.instseg_job
        state.kind, state.running, state.progress, state.status = "annotate", True, 0.5, "annotate: 2/4"
        log = _draw_all(addon)
        assert [e for e in log if e[0] == "progress"] and ("operator", "instseg.cancel_job") in log
    finally:
        state = bpy.context.window_manager.instseg_job
        state.running, state.kind = False, ""
        scene.camera = camera
        s.annotate_frame_start = s.annotate_frame_end = 0
        s.annotate_masks_only, s.annotate_uncategorized = False, "background"
        for obj in made:
            bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        for coll in (cars, root):
            bpy.data.collections.remove(coll)


def test_evaluation_shows_no_score_threshold_that_changes_nothing(addon: Any) -> None:
    s = bpy.context.scene.instseg
    log: list[tuple] = []
    addon.INSTSEG_PT_evaluation.draw(SimpleNamespace(layout=RecordingLayout(log)), bpy.context)
    assert ("prop", "InstSegSettings", "score_threshold") not in log
    s.predictions_path = "/tmp/preds.json"
    try:
        log = []
        addon.INSTSEG_PT_evaluation.draw(SimpleNamespace(layout=RecordingLayout(log)), bpy.context)
        assert any(e[0] == "label" and "Report's precision/recall at Prediction's Score Threshold" in e[1] for e in log)
    finally:
        s.predictions_path = ""


def test_errors_in_the_panel_name_its_settings(addon: Any) -> None:
    state = bpy.context.window_manager.instseg_job
    state.kind, state.running = "generate", False
    state.last_error = "error: /d holds a dataset made with other settings; use a new --out or the same settings"
    try:
        labels = " ".join(e[1] for e in _draw_all(addon) if e[0] == "label")
    finally:
        state.last_error, state.kind = "", ""
    assert "use a new Output Folder" in labels and "--out" not in labels


def test_job_state_starts_idle_after_disable_and_enable(addon: Any) -> None:
    state = bpy.context.window_manager.instseg_job
    state.kind, state.running, state.summary, state.has_metrics = "train", True, "train finished", True
    state.matched.add().object_name = "Cube"
    addon_utils.disable("blender_instseg", default_set=True)
    assert addon_utils.enable("blender_instseg", default_set=True) is not None
    state = bpy.context.window_manager.instseg_job
    assert (state.kind, state.running, state.summary, state.has_metrics, len(state.matched)) == ("", False, "", False, 0)


def test_the_python_check_is_never_saved_with_the_preferences(addon: Any, tmp_path: Any) -> None:
    import glob
    import os

    prefs = bpy.context.preferences.addons["blender_instseg"].preferences
    prefs.last_check = "instseg-check-message-7f3a"
    assert prefs.last_check == "instseg-check-message-7f3a"  # shown in this session
    bpy.ops.wm.save_userpref()
    saved = glob.glob(os.path.join(os.environ["BLENDER_USER_RESOURCES"], "**", "userpref.blend"), recursive=True)
    assert saved and all(b"instseg-check-message-7f3a" not in open(p, "rb").read() for p in saved)
    addon_utils.disable("blender_instseg", default_set=True)
    assert addon_utils.enable("blender_instseg", default_set=True) is not None
    assert bpy.context.preferences.addons["blender_instseg"].preferences.last_check == ""


def test_a_second_register_is_harmless(addon: Any) -> None:
    import blender_instseg
    from blender_instseg import blender as layer

    before = [cls.__name__ for cls in layer.registered_classes()]
    blender_instseg.register()  # e.g. a script reload: everything is taken out first, then put back once
    after = [cls.__name__ for cls in layer.registered_classes()]
    assert after == before and len(set(after)) == len(after)
    assert hasattr(bpy.types.Scene, "instseg") and bpy.context.scene.instseg.generator.camera.jitter >= 0
    assert bpy.ops.instseg.reset_config() == {"FINISHED"}
    assert sum(1 for f in bpy.app.handlers.save_pre if getattr(f, "__module__", "").startswith("blender_instseg")) <= 1
