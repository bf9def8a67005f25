"""Predict View: render the camera view, run the model out of process, bring the answer back.

Predictions come back two ways: an overlay image (``ui.overlay``), and scene selection: each
prediction is matched (``core.evaluation.matching``, one-to-one, by IoU with the object's rendered pixels) to
the object it most likely is; matched objects get selected (Blender outlines them), the best one
becomes active, and class/score are stored as custom properties. The previous selection is kept
so "Restore Selection" can undo it.

The model runs in a warm server (``ml predict --serve`` in ``children.SERVERS``), started by the
first click and reused by later ones while the Python, checkpoint (path and mtime) and device stay
the same, so only the first click pays for starting Python, importing torch and loading weights.
Cancel, a changed checkpoint/Python/device and add-on unregister stop it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from .. import OperatorReturn
from bpy.props import StringProperty
from pycocotools import mask as mask_utils

from ...core.evaluation import matching
from ...core.fileio import atomic_write_bytes, read_json
from ...ml.weights import BUNDLED, BUNDLED_CATEGORIES
from ...procs.argv import child_env, ml_argv
from ...procs.child import ChildResult
from ...procs.server import ServerCall
from ..children import SERVERS
from ..props import job_state, resolve_paths, settings
from ..ui import overlay as ov
from . import jobs
from .base import JobOperatorMixin, python_for
from .view_render import ViewRender, render_view

log = logging.getLogger(__name__)

PROP_CLASS = "instseg_class"
PROP_SCORE = "instseg_score"
PROP_IOU = "instseg_iou"
VIEW_PNG = "view.png"
PRED_JSON = "predictions.json"
OVERLAY_PNG = "overlay.png"
REQUEST_TIMEOUT_S = 120.0  # one click, cold start included; a stuck server is stopped after this


@dataclass
class PredictModel:
    """The checkpoint Predict View runs and its category names."""

    checkpoint: Path
    categories: dict[int, str]
    bundled: bool  # the shipped class-agnostic weights: no run trained yet


def predict_model(context: Any) -> PredictModel:
    """The Checkpoint setting, else the run folder's last.pt, else the bundled pretrained weights in
    class-agnostic mode (every prediction is an "object"): a new user sees masks before any training.
    A Checkpoint set to a missing file is an error, never silently replaced."""
    paths = resolve_paths(context)
    if settings(context).checkpoint.strip() or paths.checkpoint.is_file():
        if not paths.checkpoint.is_file():
            raise ValueError(f"checkpoint not found: {paths.checkpoint} (train first or clear Checkpoint)")
        if paths.checkpoint.resolve() == BUNDLED:
            return PredictModel(BUNDLED, dict(BUNDLED_CATEGORIES), True)
        return PredictModel(paths.checkpoint, find_categories(paths.checkpoint, paths.dataset), False)
    if not BUNDLED.is_file():
        raise ValueError(f"no trained run in {paths.run} and the bundled weights are missing: {BUNDLED} "
                         "(reinstall the add-on, or train first)")
    return PredictModel(BUNDLED, dict(BUNDLED_CATEGORIES), True)


def find_categories(checkpoint: Path | None, dataset: Path | None) -> dict[int, str]:
    """Category id -> name, from the run's config.json, else the dataset's COCO file."""
    candidates: list[Path] = []
    if checkpoint is not None:
        candidates.append(checkpoint.parent / "config.json")
    if dataset is not None:
        candidates += [dataset / "annotations.json", dataset / "config.json"]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            found = _categories_in(read_json(path))
        except (ValueError, OSError):
            continue
        if found:
            return found
    return {}


def _categories_in(obj: Any, depth: int = 0) -> dict[int, str]:
    if depth > 3:
        return {}
    if isinstance(obj, dict):
        cats = obj.get("categories")
        if isinstance(cats, list) and cats and all(isinstance(c, dict) and "id" in c and "name" in c for c in cats):
            return {int(c["id"]): str(c["name"]) for c in cats}
        for value in obj.values():
            found = _categories_in(value, depth + 1)
            if found:
                return found
    return {}


def load_predictions(path: Path, shape: tuple[int, int], score_threshold: float) -> list[dict]:
    """COCO results for the (single) predicted image, above the threshold, highest score first.

    Each kept result gets ``_index``: its position in the file, which is what the panel lists.
    """
    data = read_json(path, "predictions file")
    if isinstance(data, dict):
        data = data.get("predictions", data.get("annotations"))
    if not isinstance(data, list):
        raise ValueError(f"{path} is not a COCO results list")
    image_ids = {p.get("image_id") for p in data if isinstance(p, dict)}
    if len(image_ids) > 1:
        first = min(i for i in image_ids if i is not None)
        data = [p for p in data if p.get("image_id") == first]
        log.warning("predictions hold %d images; showing image_id %s", len(image_ids), first)
    out = []
    for file_index, p in enumerate(data):
        if not isinstance(p, dict) or "segmentation" not in p:
            raise ValueError(f"{path}: every prediction needs a 'segmentation' (RLE)")
        score = p.get("score", 1.0)
        # NaN passes no comparison, so it would never be cut by the threshold: refuse it by name
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ValueError(f"{path}: prediction {file_index} has score {score!r}; scores must be numbers in [0, 1]")
        if score < score_threshold:
            continue
        seg = p["segmentation"]
        size = tuple(seg.get("size", ())) if isinstance(seg, dict) else ()
        if size != shape:
            raise ValueError(f"{path}: mask size {list(size)} differs from the rendered view {list(shape)}")
        out.append({**p, "_index": file_index})
    out.sort(key=lambda p: -float(p.get("score", 1.0)))
    return out


def decode_masks(preds: list[dict], shape: tuple[int, int]) -> np.ndarray:
    if not preds:
        return np.zeros((0, *shape), bool)
    rles = []
    for p in preds:
        seg = dict(p["segmentation"])
        if isinstance(seg.get("counts"), str):
            seg["counts"] = seg["counts"].encode("ascii")
        rles.append(seg)
    return np.asarray(mask_utils.decode(rles), dtype=bool).transpose(2, 0, 1)


def _clear_instseg_props(scene: Any) -> None:
    for ob in scene.objects:
        for key in (PROP_CLASS, PROP_SCORE, PROP_IOU):
            if key in ob:
                del ob[key]


def save_selection(context: Any) -> None:
    """Remember the selection once; later predictions keep the first (pre-prediction) one."""
    state = job_state(context)
    if state.has_saved_selection:
        return
    state.saved_selection.clear()
    for ob in context.view_layer.objects:
        if ob.select_get():
            state.saved_selection.add().object_name = ob.name
    active = context.view_layer.objects.active
    state.saved_active = active.name if active is not None else ""
    state.has_saved_selection = True


def draw_predictions(rgb: np.ndarray, masks: np.ndarray, names: list[str], scores: np.ndarray) -> ov.Overlay:
    """The overlay of one view: "class score" labels, low scores drawn first so the best ends on top."""
    labels = [f"{n} {sc:.2f}" for n, sc in zip(names, scores)]
    order = np.argsort(scores, kind="stable")
    return ov.draw_overlay(rgb, masks[order], [labels[i] for i in order])


def apply_predictions(context: Any, view: ViewRender, preds_path: Path, out_dir: Path,
                      categories: dict[int, str], min_score: float | None = None) -> str:
    """Overlay + selection + panel lists for the predictions in ``preds_path`` scoring >= ``min_score``
    (default: the panel's Score Threshold)."""
    s = settings(context)
    state = job_state(context)
    shape = tuple(view.id_map.shape)
    threshold = float(s.score_threshold) if min_score is None else min_score
    preds = load_predictions(preds_path, shape, threshold)  # type: ignore[arg-type]
    masks = decode_masks(preds, shape)  # type: ignore[arg-type]
    scores = np.array([float(p.get("score", 1.0)) for p in preds])
    names = [categories.get(int(p.get("category_id", 0)), f"class {p.get('category_id')}") for p in preds]
    result = matching.match_to_id_map(masks, view.id_map, scores, iou_threshold=s.match_iou_threshold)

    drawn = draw_predictions(view.rgb, masks, names, scores)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_path = out_dir / OVERLAY_PNG
    atomic_write_bytes(overlay_path, ov.encode_png(drawn.composite))
    image = ov.to_blender_image(ov.COMPOSITE_NAME, drawn.composite)
    layer = ov.to_blender_image(ov.LAYER_NAME, drawn.layer)
    ov.show_in_image_editors(context, image)
    if s.show_in_camera and context.scene.camera is not None:
        ov.remove_camera_backgrounds((ov.LAYER_SEQUENCE_NAME,))  # one overlay over the camera at a time
        ov.set_camera_background(context.scene.camera, layer)
    state.overlay_image = image.name
    state.overlay_path = str(overlay_path)

    # selection
    scene = context.scene
    save_selection(context)
    _clear_instseg_props(scene)
    for ob in context.view_layer.objects:
        ob.select_set(False)
    state.matched.clear()
    state.unmatched.clear()
    state.missed.clear()
    best = None
    for m in sorted(result.matches, key=lambda m: -scores[m.prediction]):
        ob = scene.objects.get(view.index_to_object.get(m.instance_id, ""))
        if ob is None:
            continue
        ob.select_set(True)
        ob[PROP_CLASS] = names[m.prediction]
        ob[PROP_SCORE] = float(scores[m.prediction])
        ob[PROP_IOU] = float(m.iou)
        row = state.matched.add()
        row.index, row.category, row.score, row.object_name, row.iou = (
            preds[m.prediction]["_index"], names[m.prediction], float(scores[m.prediction]), ob.name, float(m.iou))
        if best is None:
            best = ob
    if best is not None:
        context.view_layer.objects.active = best
    for i in result.unmatched_predictions:
        row = state.unmatched.add()
        row.index, row.category, row.score = preds[i]["_index"], names[i], float(scores[i])
    for inst in result.missed_instances:
        name = view.index_to_object.get(inst)
        if name:
            state.missed.add().object_name = name
    return (f"{len(preds)} predictions: {len(result.matches)} matched, "
            f"{len(result.unmatched_predictions)} unmatched, {len(state.missed)} objects missed")


def server_key(python: str, checkpoint: Path, device: str) -> tuple[str, str, int, str]:
    """What a warm predict server is valid for: a retrained checkpoint (new mtime) or another Python/device
    gets a fresh server (``procs.server.ServerPool`` stops the old one)."""
    ckpt = checkpoint.resolve()
    return (python, str(ckpt), ckpt.stat().st_mtime_ns, device)


@dataclass
class ModelSetup:
    """How Predict View asks the model: the warm server's key and command line, and the threshold."""

    key: tuple[str, str, int, str]
    serve_argv: list[str]
    threshold_args: list[str]  # ["--score-threshold", T], or [] for the checkpoint's own threshold
    request_threshold: float | None  # sent with each request; None = the server's own
    min_score: float | None  # what apply_predictions keeps (0.0: the model already filtered)

    def warm(self) -> bool:
        """True when a server for this key is already running (no cold start to wait for)."""
        current = SERVERS.current
        return current is not None and current.key == self.key and current.alive

    def call(self, image: Path, out: Path, fallback_argv: list[str], *, env: dict[str, str] | None,
             cwd: str | None) -> ServerCall:
        """One request (``image`` -> COCO results in ``out``) to the pooled server for this key."""
        request: dict[str, Any] = {"image": str(image), "out": str(out)}
        if self.request_threshold is not None:
            request["score_threshold"] = self.request_threshold
        return ServerCall(SERVERS, self.key, self.serve_argv, request, env=env, cwd=cwd,
                          fallback_argv=fallback_argv, name="predict", timeout=REQUEST_TIMEOUT_S)


def model_setup(s: Any, python: str, checkpoint: Path) -> ModelSetup:
    """The panel's settings ``s`` as a ``ModelSetup``. With the model's own threshold the predict
    process filters, so its file is shown whole."""
    threshold = [] if s.auto_threshold else ["--score-threshold", f"{s.score_threshold:g}"]
    serve_argv = ml_argv(python, "predict", ["--serve", "--checkpoint", str(checkpoint), *threshold,
                                             "--device", s.device])
    return ModelSetup(key=server_key(python, checkpoint, s.device), serve_argv=serve_argv, threshold_args=threshold,
                      request_threshold=None if s.auto_threshold else float(s.score_threshold),
                      min_score=0.0 if s.auto_threshold else None)


class INSTSEG_OT_predict_view(JobOperatorMixin, bpy.types.Operator):
    """Render the camera view, predict instances, show them as an overlay and select the matched objects"""

    bl_idname = "instseg.predict_view"
    bl_label = "Predict View"

    predictions_path: StringProperty(  # type: ignore[valid-type]
        name="Predictions", subtype="FILE_PATH", default="", options={"SKIP_SAVE"},
        description="Use this COCO results file for the rendered view instead of running the model")
    output_dir: StringProperty(  # type: ignore[valid-type]
        name="Output Folder", subtype="DIR_PATH", default="", options={"HIDDEN", "SKIP_SAVE"},
        description="Folder for view.png, predictions.json and overlay.png; empty = 'predict' under the output folder")

    def _out_dir(self, context: Any) -> Path:
        return Path(bpy.path.abspath(self.output_dir)) if self.output_dir else resolve_paths(context).predict

    def _render(self, context: Any) -> tuple[ViewRender, Path]:
        out_dir = self._out_dir(context)
        view = render_view(context, samples=settings(context).predict_samples)
        out_dir.mkdir(parents=True, exist_ok=True)
        view_png = out_dir / VIEW_PNG
        atomic_write_bytes(view_png, ov.encode_png(view.rgb))
        return view, view_png

    def execute(self, context: Any) -> set[OperatorReturn]:
        if not self.predictions_path:
            return super().execute(context)
        # Given predictions (tests, or results from elsewhere): no model process to run.
        paths = resolve_paths(context)
        given = Path(bpy.path.abspath(self.predictions_path))
        state = job_state(context)
        state.last_error = ""
        try:
            if not given.is_file():
                raise ValueError(f"predictions file not found: {given}")
            view, _ = self._render(context)
            summary = apply_predictions(context, view, given, self._out_dir(context),
                                        find_categories(paths.checkpoint, paths.dataset))
        except (ValueError, OSError) as exc:
            return self.fail(context, str(exc))
        state.summary = summary
        state.status = "predict finished"
        self.report({"INFO"}, summary)
        return {"FINISHED"}

    def build_spec(self, context: Any) -> jobs.JobSpec:
        s = settings(context)
        chosen = predict_model(context)
        python = python_for(self, context)
        view, view_png = self._render(context)
        out_dir = self._out_dir(context)
        preds_path = out_dir / PRED_JSON
        categories = chosen.categories

        model = model_setup(s, python, chosen.checkpoint)
        threshold, min_score = model.threshold_args, model.min_score

        def on_done(ctx: Any, result: ChildResult) -> str:
            summary = apply_predictions(ctx, view, preds_path, out_dir, categories, min_score)
            return f"{summary} (pretrained weights: objects of any kind; train for your categories)" \
                if chosen.bundled else summary

        argv = ml_argv(python, "predict", ["--checkpoint", str(chosen.checkpoint), "--images", str(view_png),
                                           "--out", str(preds_path), *threshold, "--device", s.device])
        env, cwd = child_env(), str(out_dir)

        def make_call() -> ServerCall:
            return model.call(view_png, preds_path, argv, env=env, cwd=cwd)

        label = "predicting" if model.warm() else "predicting (starting the model)"
        return jobs.JobSpec("predict", argv, on_done, env=env, cwd=cwd, label=label, make_job=make_call)


class INSTSEG_OT_clear_overlay(bpy.types.Operator):
    """Remove the prediction overlay images, camera backgrounds and stored classes/scores"""

    bl_idname = "instseg.clear_overlay"
    bl_label = "Clear Overlay"

    def execute(self, context: Any) -> set[OperatorReturn]:
        names = (ov.COMPOSITE_NAME, ov.LAYER_NAME, ov.SEQUENCE_NAME, ov.LAYER_SEQUENCE_NAME)
        ov.remove_camera_backgrounds(names)
        for name in names:
            image = bpy.data.images.get(name)
            if image is not None:
                bpy.data.images.remove(image)
        _clear_instseg_props(context.scene)
        state = job_state(context)
        state.overlay_image = ""
        state.matched.clear()
        state.unmatched.clear()
        state.missed.clear()
        state.frame_matched.clear()
        state.frames_summary = ""
        return {"FINISHED"}


class INSTSEG_OT_restore_selection(bpy.types.Operator):
    """Give back the selection and active object from before the first prediction"""

    bl_idname = "instseg.restore_selection"
    bl_label = "Restore Selection"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return bool(job_state(context).has_saved_selection)

    def execute(self, context: Any) -> set[OperatorReturn]:
        state = job_state(context)
        keep = {row.object_name for row in state.saved_selection}
        for ob in context.view_layer.objects:
            ob.select_set(ob.name in keep)
        active = context.view_layer.objects.get(state.saved_active) if state.saved_active else None
        context.view_layer.objects.active = active
        state.saved_selection.clear()
        state.saved_active = ""
        state.has_saved_selection = False
        return {"FINISHED"}


classes = (INSTSEG_OT_predict_view, INSTSEG_OT_clear_overlay, INSTSEG_OT_restore_selection)
