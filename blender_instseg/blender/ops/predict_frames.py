"""Predict View over a frame range: every frame rendered, predicted and matched like one click.

For each frame of the range the scene is set to that frame, the camera view rendered
(``view_render.render_view``, as Predict View does), and one request sent to the warm model server
(``predict.ModelSetup``: the same ``children.SERVERS`` pool, so the model starts at most once for
the whole range and stays warm for later clicks). The answer is matched to that frame's rendered
objects and drawn. What a run leaves in its folder (default ``predict_frames/`` under the output
folder)::

    views/frame_0001.png        the rendered view the model saw
    predictions/frame_0001.json COCO results of that frame (the server's file; image_id 1)
    overlay/frame_0001.png      the overlay over the view (Image Editor)
    overlay_layer/frame_0001.png the overlay alone, transparent elsewhere (camera background)
    summary.json, summary.md    per object / instance across the frames (core.evaluation.frame_summary)

The two overlay folders come back as two image sequences (``ui.overlay.load_image_sequence``) the
user scrubs with the timeline. Matched objects per frame are a list the panel shows for the current
frame (``InstSegJobState.frame_matched``), not a selection that changes with the frame: a handler
rewriting the selection on every frame change would fight the artist's own selection, and the scene
is left exactly as it was (current frame, selection, active object; pass indices and render settings
are restored by ``render_view`` per frame).

The frames run inside the job's ``poll`` (main thread, blocking path and timer path alike): when a
frame's answer is in, the next frame is rendered and requested. Cancel stops after the frame in hand;
the frames done keep their files and get the overlay and summary.
"""

from __future__ import annotations

import contextlib
import logging
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import bpy
import numpy as np
from bpy.props import StringProperty

from ...core.evaluation import frame_summary as fs
from ...core.evaluation import matching
from ...core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from ...core.protocol import Event, is_stop_command
from ...generator.annotate_cli import frame_list
from ...procs.argv import child_env, ml_argv
from ...procs.child import ChildResult, ChildStartError, Drivable
from ..props import job_state, resolve_paths, settings
from ..ui import overlay as ov
from . import jobs
from .base import JobOperatorMixin, python_for
from .predict import decode_masks, draw_predictions, find_categories, load_predictions, model_setup, predict_model
from .view_render import ViewRender, render_view

log = logging.getLogger(__name__)

DEFAULT_DIR = "predict_frames"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
SUMMARY_LINES = 5  # least-found objects the panel shows

# Called with every per-frame progress event (predict_cli prints them as protocol events).
PROGRESS_HOOKS: list[Callable[[Event], None]] = []


def frame_file(folder: Path, frame: int, ext: str) -> Path:
    """``folder/frame_0001.<ext>``: numbered by scene frame, the way Blender finds a sequence's files."""
    return folder / f"frame_{frame:04d}.{ext}"


@dataclass
class FramesLayout:
    """The folders of one run (module docstring)."""

    root: Path

    @property
    def views(self) -> Path:
        return self.root / "views"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def overlay(self) -> Path:
        return self.root / "overlay"

    @property
    def overlay_layer(self) -> Path:
        return self.root / "overlay_layer"

    def prepare(self) -> None:
        """Create the folders and drop an earlier run's frame files, so the folder is one run."""
        for folder in (self.views, self.predictions, self.overlay, self.overlay_layer):
            folder.mkdir(parents=True, exist_ok=True)
            for old in list(folder.glob("frame_*.png")) + list(folder.glob("frame_*.json")):
                old.unlink()
        for name in (SUMMARY_JSON, SUMMARY_MD):
            (self.root / name).unlink(missing_ok=True)


def resolve_frames(scene: Any, requested: str = "", start: int = 0, end: int = 0) -> list[int]:
    """The frames to predict: ``requested`` ("A-B" or "A"), else Start/End (0 = the scene's start/end).

    Same syntax and checks as annotate-scene's ``--frames`` (``generator.annotate_cli``): a range
    outside the scene's or with its end before its start raises ``UsageError`` (a ValueError).
    """
    text: str | None = requested.strip() or None
    if text is None and (start or end):
        text = f"{start or scene.frame_start}-{end or scene.frame_end}"
    return frame_list(text, 1, (int(scene.frame_start), int(scene.frame_end)))


def check_camera(scene: Any) -> None:
    if scene.camera is None:
        raise ValueError("the scene has no active camera; add one or set Scene > Camera")


@dataclass
class SceneState:
    """What a run changes and gives back: the current frame and the selection."""

    scene: str
    view_layer: str
    frame: int
    subframe: float
    selected: set[str] = field(default_factory=set)
    active: str = ""

    @classmethod
    def capture(cls, scene: Any, view_layer: Any) -> "SceneState":
        active = view_layer.objects.active
        return cls(scene.name, view_layer.name, int(scene.frame_current), float(scene.frame_subframe),
                   {ob.name for ob in view_layer.objects if ob.select_get()}, active.name if active else "")

    def restore(self) -> None:
        scene = bpy.data.scenes.get(self.scene)
        if scene is None:
            return
        scene.frame_set(self.frame, subframe=self.subframe)
        view_layer = scene.view_layers.get(self.view_layer)
        if view_layer is None:
            return
        for ob in view_layer.objects:
            if ob.select_get() != (ob.name in self.selected):
                ob.select_set(ob.name in self.selected)
        view_layer.objects.active = view_layer.objects.get(self.active) if self.active else None


@contextlib.contextmanager
def _window_context() -> Iterator[None]:
    """Timers run without a window; the render operator is happier with one when there is one."""
    context = bpy.context
    wm = getattr(context, "window_manager", None)
    window = wm.windows[0] if wm is not None and len(wm.windows) else None
    if window is None or getattr(context, "window", None) is not None:
        yield
        return
    with context.temp_override(window=window, screen=window.screen):
        yield


# a request for one frame: (view image, results file) -> a started-on-demand Drivable
RequestFactory = Callable[[Path, Path], Drivable]


class FramesJob:
    """The frame loop as one ``procs.child.Drivable``, so ``ops.jobs`` drives it like any job.

    ``poll`` renders the next frame once the last one's answer is in. ``send("stop")`` (Cancel)
    lets the frame in hand finish, then ends the run: the warm server is not told to stop. ``proc``
    is None, so the job runner never escalates to signals: a stuck request ends by its own timeout.
    """

    def __init__(self, scene: Any, view_layer: Any, frames: list[int], layout: FramesLayout, *, samples: int,
                 score_threshold: float, match_iou: float, categories: dict[int, str],
                 request: RequestFactory | None, given: Path | None = None) -> None:
        self.scene_name, self.view_layer_name = scene.name, view_layer.name
        self.frames, self.layout = list(frames), layout
        self.samples, self.score_threshold, self.match_iou = samples, score_threshold, match_iou
        self.categories, self.request, self.given = categories, request, given
        self.cancelled = False
        self.records: list[fs.FrameRecord] = []
        self._saved: SceneState | None = None
        self._call: Drivable | None = None
        self._view: ViewRender | None = None
        self._answered = False  # given predictions: the frame's file is in place without a request
        self._error: str | None = None
        self._done = False

    # -- Drivable ------------------------------------------------------------------------------
    @property
    def proc(self) -> None:
        return None

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def running(self) -> bool:
        return self._call is not None and self._call.running

    def start(self) -> "FramesJob":
        scene = bpy.data.scenes[self.scene_name]
        self._saved = SceneState.capture(scene, scene.view_layers[self.view_layer_name])
        self._step(self._begin_frame)
        return self

    def poll(self) -> list[Event]:
        if self._done:
            return []
        if self._call is not None:
            self._call.poll()  # the server's own events (ready, result) are the call's business
            if not self._call.finished:
                return []
            result = self._call.result()
            self._call.close()
            self._call = None
            if result.error:
                self._fail(result.error)
                return []
            if result.done is None:  # the request never got its answer (stopped)
                self._end()
                return []
        elif not self._answered:
            return []
        self._answered = False
        frame = self.frames[len(self.records)]
        if not self._step(self._finish_frame):
            return []
        event = Event("progress", {"step": len(self.records), "total": len(self.frames),
                                   "phase": f"frame {frame}", "frame": frame})
        for hook in list(PROGRESS_HOOKS):
            hook(event)
        if len(self.records) < len(self.frames) and not self.cancelled:
            self._step(self._begin_frame)
        else:
            self._end()
        return [event]

    def send(self, line: str) -> bool:
        if is_stop_command(line):
            self.cancelled = True  # after the frame in hand
        return True

    def stop(self, grace_s: float = 10.0, term_s: float = 5.0) -> int | None:
        """Give up now (add-on unregister, a timeout): the request in hand is dropped with its server."""
        self.cancelled = True
        if self._call is not None:
            self._call.stop(grace_s, term_s)
            self._call.close()
            self._call = None
        self._end()
        return None

    def close(self) -> None:
        if self._call is not None:
            self._call.close()

    def result(self) -> ChildResult:
        if self._error is not None:
            return ChildResult(returncode=1, error=self._error, cancelled=self.cancelled)
        done = [r.frame for r in self.records]
        if not done:
            return ChildResult(returncode=0, cancelled=True)
        return ChildResult(returncode=0, done=Event("done", {"frames": done, "out": str(self.layout.root)}),
                           cancelled=self.cancelled and len(done) < len(self.frames), events=len(done))

    # -- the frame loop ------------------------------------------------------------------------
    def _step(self, action: Callable[[], None]) -> bool:
        try:
            action()
        except (ValueError, OSError, KeyError, ChildStartError) as exc:
            frame = self.frames[min(len(self.records), len(self.frames) - 1)]
            self._fail(f"frame {frame}: {exc}")
            return False
        return True

    def _begin_frame(self) -> None:
        frame = self.frames[len(self.records)]
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise ValueError(f"the scene {self.scene_name!r} is gone")
        view_layer = scene.view_layers[self.view_layer_name]
        scene.frame_set(frame)
        with _window_context():
            view = render_view(types.SimpleNamespace(scene=scene, view_layer=view_layer), samples=self.samples)
        view_png = frame_file(self.layout.views, frame, "png")
        atomic_write_bytes(view_png, ov.encode_png(view.rgb))
        self._view = view
        out = frame_file(self.layout.predictions, frame, "json")
        if self.given is not None:
            atomic_write_bytes(out, frame_file(self.given, frame, "json").read_bytes())
            self._answered = True
            return
        assert self.request is not None
        self._call = self.request(view_png, out)
        self._call.start()

    def _finish_frame(self) -> None:
        frame = self.frames[len(self.records)]
        view = self._view
        assert view is not None
        shape = tuple(view.id_map.shape)
        preds = load_predictions(frame_file(self.layout.predictions, frame, "json"), shape,  # type: ignore[arg-type]
                                 self.score_threshold)
        masks = decode_masks(preds, shape)  # type: ignore[arg-type]
        scores = np.array([float(p.get("score", 1.0)) for p in preds])
        names = [self.categories.get(int(p.get("category_id", 0)), f"class {p.get('category_id')}") for p in preds]
        result = matching.match_to_id_map(masks, view.id_map, scores, iou_threshold=self.match_iou)
        drawn = draw_predictions(view.rgb, masks, names, scores)
        atomic_write_bytes(frame_file(self.layout.overlay, frame, "png"), ov.encode_png(drawn.composite))
        atomic_write_bytes(frame_file(self.layout.overlay_layer, frame, "png"), ov.encode_png(drawn.layer))

        def instance(i: int) -> str:
            return view.index_to_instance.get(i) or view.index_to_object.get(i, f"id {i}")

        ids, counts = np.unique(view.id_map, return_counts=True)
        seen = [fs.Seen(instance(int(i)), view.index_to_object.get(int(i), f"id {i}"), int(c))
                for i, c in zip(ids, counts) if i]
        found = [fs.Found(instance(m.instance_id), view.index_to_object.get(m.instance_id, ""), names[m.prediction],
                          float(scores[m.prediction]), float(m.iou), int(preds[m.prediction]["_index"]))
                 for m in sorted(result.matches, key=lambda m: -scores[m.prediction])]
        self.records.append(fs.FrameRecord(frame, seen, found, predictions=len(preds),
                                           unmatched=len(result.unmatched_predictions)))
        self._view = None

    def _fail(self, message: str) -> None:
        self._error = message
        self._end()

    def _end(self) -> None:
        if self._done:
            return
        self._done = True
        self._view = None
        if self._saved is not None:
            self._saved.restore()


def finish_run(context: Any, job: FramesJob) -> str:
    """Write the summary, load both overlay sequences, fill the panel's lists; returns the headline."""
    if not job.records:
        raise ValueError("no frame was predicted")
    summary = fs.summarize(job.records)
    layout = job.layout
    summary["out"] = str(layout.root)
    atomic_write_json(layout.root / SUMMARY_JSON, summary, indent=2)
    atomic_write_text(layout.root / SUMMARY_MD, fs.to_markdown(summary))

    frames = summary["frames"]
    first, count = frames[0], len(frames)  # a cancelled run did a leading part of the range: still contiguous
    composite = ov.load_image_sequence(ov.SEQUENCE_NAME, frame_file(layout.overlay, first, "png"))
    layer = ov.load_image_sequence(ov.LAYER_SEQUENCE_NAME, frame_file(layout.overlay_layer, first, "png"))
    ov.show_sequence_in_image_editors(context, composite, first, count)
    scene = bpy.data.scenes.get(job.scene_name) or context.scene
    if settings(context).show_in_camera and scene.camera is not None:
        ov.remove_camera_backgrounds((ov.LAYER_NAME,))  # one overlay over the camera at a time
        ov.set_camera_background_sequence(scene.camera, layer, first, count)

    state = job_state(context)
    state.overlay_image = composite.name
    state.overlay_path = str(frame_file(layout.overlay, first, "png"))
    state.frames_dir = str(layout.root)
    state.matched.clear()
    state.unmatched.clear()
    state.missed.clear()
    state.frame_matched.clear()
    for rec in job.records:
        for f in rec.found:
            row = state.frame_matched.add()
            row.frame, row.index, row.category, row.score, row.object_name, row.iou = (
                rec.frame, f.prediction, f.category, f.score, f.instance, f.iou)
    state.frames_summary = "\n".join(fs.top_lines(summary, SUMMARY_LINES))
    return fs.headline(summary)


def _check_given(folder: Path, frames: list[int]) -> None:
    if not folder.is_dir():
        raise ValueError(f"predictions folder not found: {folder}")
    for frame in frames:
        path = frame_file(folder, frame, "json")
        if not path.is_file():
            raise ValueError(f"predictions folder {folder} has no {path.name} for frame {frame}")
        read_json(path, "predictions file")  # one-line error for a broken file, before anything is written


class INSTSEG_OT_predict_frames(JobOperatorMixin, bpy.types.Operator):
    """Predict every frame of a range: an overlay sequence to scrub, COCO results per frame and a per-object summary"""

    bl_idname = "instseg.predict_frames"
    bl_label = "Predict Frames"

    frames: StringProperty(  # type: ignore[valid-type]
        name="Frames", default="", options={"SKIP_SAVE"},
        description="A-B or A; empty = the panel's Start/End (0 = the scene's frame range)")
    output_dir: StringProperty(  # type: ignore[valid-type]
        name="Output Folder", subtype="DIR_PATH", default="", options={"HIDDEN", "SKIP_SAVE"},
        description="Folder of the run; empty = 'predict_frames' under the output folder")
    predictions_dir: StringProperty(  # type: ignore[valid-type]
        name="Predictions Folder", subtype="DIR_PATH", default="", options={"SKIP_SAVE"},
        description="Use the COCO results files frame_NNNN.json in this folder instead of running the model")

    def build_spec(self, context: Any) -> jobs.JobSpec:
        s = settings(context)
        scene, view_layer = context.scene, context.view_layer
        # every check before anything is written or started
        check_camera(scene)
        frames = resolve_frames(scene, self.frames, s.predict_frame_start, s.predict_frame_end)
        paths = resolve_paths(context)
        out_dir = Path(bpy.path.abspath(self.output_dir)) if self.output_dir else paths.root / DEFAULT_DIR
        given = Path(bpy.path.abspath(self.predictions_dir)) if self.predictions_dir else None
        categories = find_categories(paths.checkpoint, paths.dataset)
        request: RequestFactory | None = None
        threshold = float(s.score_threshold)
        label = f"predicting {len(frames)} frames"
        if given is not None:
            _check_given(given, frames)
        else:
            chosen = predict_model(context)
            categories = chosen.categories
            python = python_for(self, context)
            model = model_setup(s, python, chosen.checkpoint)
            threshold = threshold if model.min_score is None else model.min_score
            env, cwd = child_env(), str(out_dir)

            def request(image: Path, out: Path) -> Drivable:
                one_shot = ml_argv(python, "predict", ["--checkpoint", str(chosen.checkpoint), "--images", str(image),
                                                       "--out", str(out), *model.threshold_args, "--device", s.device])
                return model.call(image, out, one_shot, env=env, cwd=cwd)

            if not model.warm():
                label += " (starting the model)"
        layout = FramesLayout(out_dir)
        layout.prepare()
        job = FramesJob(scene, view_layer, frames, layout, samples=s.predict_samples, score_threshold=threshold,
                        match_iou=s.match_iou_threshold, categories=categories,
                        request=request, given=given)

        def on_done(ctx: Any, result: ChildResult) -> str:
            return finish_run(ctx, job)

        return jobs.JobSpec("predict", [], on_done, label=label, make_job=lambda: job)


classes = (INSTSEG_OT_predict_frames,)
