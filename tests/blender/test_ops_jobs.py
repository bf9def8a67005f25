"""Train / evaluate / generate operators end to end with real child processes.

The trainer here is a small stand-in script (the real one is tested in tests/ml); it is what the
operator talks to, not what is under test. The async path is driven by calling the timer callback
``jobs.tick`` by hand, since bpy.app.timers never fire in module mode.
"""

from __future__ import annotations

import json
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402
import addon_utils  # noqa: E402

FAKE_TRAINER = """
    import json, sys, threading, time
    from pathlib import Path
    args = sys.argv[1:]
    out = Path(args[args.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "argv.json").write_text(json.dumps(args))
    mode = "{mode}"
    if mode == "crash":
        print(json.dumps({{"event": "progress", "step": 1, "total": 10, "loss": 2.0}}), flush=True)
        raise SystemExit("RuntimeError: out of memory while training (fake)")
    if mode == "stubborn":  # ignores "stop" and SIGTERM: only SIGKILL ends it
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(json.dumps({{"event": "progress", "step": 1, "total": 100, "loss": 1.0}}), flush=True)
        while True:
            time.sleep(0.05)
    stop = threading.Event()
    def watch():
        for line in sys.stdin:
            if line.strip() == "stop":
                stop.set()
    threading.Thread(target=watch, daemon=True).start()
    total = 3 if mode == "ok" else 10**6
    for step in range(1, total + 1):
        if stop.is_set():
            break
        print(json.dumps({{"event": "progress", "step": step, "total": total, "loss": 1.0 / step,
                          "eta_s": 5.0 * (total - step)}}), flush=True)
        time.sleep(0.01 if mode == "ok" else 0.05)
    (out / "last.pt").write_bytes(b"checkpoint")
    print(json.dumps({{"event": "checkpoint", "path": str(out / "last.pt"), "step": step}}), flush=True)
    print(json.dumps({{"event": "done", "checkpoint": str(out / "last.pt"), "steps": step}}), flush=True)
"""


def _fake_python(tmp_path: Path, mode: str) -> str:
    """An executable that ignores `-u -m blender_instseg.ml train` and runs the stand-in trainer."""
    script = tmp_path / f"trainer_{mode}.py"
    script.write_text(textwrap.dedent(FAKE_TRAINER.format(mode=mode)))
    wrapper = tmp_path / f"python-{mode}"
    wrapper.write_text(f'#!/bin/sh\nshift 4\nexec "{sys.executable}" -u "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


@pytest.fixture()
def settings(addon, tmp_path: Path):
    s = bpy.context.scene.instseg
    s.dataset_dir = str(tmp_path / "dataset")
    s.run_dir = str(tmp_path / "run")
    s.checkpoint = ""
    s.predictions_path = ""
    s.epochs = 0
    s.train_minutes = 0.5
    s.device = "cpu"
    (tmp_path / "dataset").mkdir()
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    yield s
    from blender_instseg.blender.ops import jobs

    jobs.shutdown()
    if bpy.app.timers.is_registered(jobs.tick):
        bpy.app.timers.unregister(jobs.tick)


def test_train_blocking_reports_progress_loss_and_checkpoint(settings, tmp_path: Path) -> None:
    assert bpy.ops.instseg.train(python=_fake_python(tmp_path, "ok")) == {"FINISHED"}
    state = bpy.context.window_manager.instseg_job
    assert not state.running and state.kind == "train" and state.last_error == ""
    assert state.progress == pytest.approx(1.0)
    assert state.has_loss and state.loss == pytest.approx(1.0 / 3)
    assert state.summary == f"checkpoint: {tmp_path / 'run' / 'last.pt'}"
    argv = json.loads((tmp_path / "run" / "argv.json").read_text())
    assert argv == ["--data", str(tmp_path / "dataset"), "--out", str(tmp_path / "run"), "--device", "cpu",
                    "--init", "bundled", "--minutes", "0.5"]  # Start From: Pretrained Weights, the default
    settings.epochs = 4
    assert bpy.ops.instseg.train(python=_fake_python(tmp_path, "ok")) == {"FINISHED"}
    argv = json.loads((tmp_path / "run" / "argv.json").read_text())
    assert argv[-2:] == ["--epochs", "4"]
    assert "--resume" in argv, "a run folder holding last.pt is continued, never overwritten"


def test_train_refuses_an_existing_run_when_resume_is_off(settings, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"earlier run")
    settings.resume_training = False
    try:
        with pytest.raises(RuntimeError, match="already holds a run: tick Resume"):
            bpy.ops.instseg.train(python=_fake_python(tmp_path, "ok"))
    finally:
        settings.resume_training = True
    assert (tmp_path / "run" / "last.pt").read_bytes() == b"earlier run"
    assert not (tmp_path / "run" / "argv.json").exists(), "the trainer must not have been started"


def test_trainer_crash_shows_its_message(settings, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="out of memory while training"):
        bpy.ops.instseg.train(python=_fake_python(tmp_path, "crash"))
    state = bpy.context.window_manager.instseg_job
    assert not state.running and state.status == "train failed"
    assert state.last_error == "train failed (exit code 1): RuntimeError: out of memory while training (fake)"


def test_missing_interpreter_and_missing_dataset(settings, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot start train"):
        bpy.ops.instseg.train(python=str(tmp_path / "nowhere" / "python"))
    settings.dataset_dir = str(tmp_path / "no-dataset")
    with pytest.raises(RuntimeError, match="dataset folder not found"):
        bpy.ops.instseg.train(python=sys.executable)
    assert "dataset folder not found" in bpy.context.window_manager.instseg_job.last_error


def _start_train(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch):
    """Click Train as in the UI: the real operator takes its timer path (``jobs.start``), which the
    tests then drive by calling ``jobs.tick`` by hand."""
    from blender_instseg.blender.ops import jobs

    monkeypatch.setattr(jobs, "ASYNC_IN_BACKGROUND", True)
    assert bpy.ops.instseg.train(python=_fake_python(tmp_path, mode)) == {"FINISHED"}
    assert jobs.is_running() and bpy.app.timers.is_registered(jobs.tick)
    assert bpy.context.window_manager.instseg_job.status == "training"  # the operator's label, before any event
    return jobs


def _tick_until_done(jobs, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while jobs.tick() is not None:
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.05)


def test_timer_path_updates_state_and_finishes(settings, tmp_path: Path, monkeypatch) -> None:
    jobs = _start_train(tmp_path, "ok", monkeypatch)
    state = bpy.context.window_manager.instseg_job
    assert state.running and state.kind == "train"
    with pytest.raises(RuntimeError):  # one job at a time: the operators refuse to start another
        bpy.ops.instseg.train(python=sys.executable)
    _tick_until_done(jobs)
    assert not jobs.is_running() and not state.running
    assert state.progress == 1.0 and state.has_loss and state.loss == pytest.approx(1.0 / 3)
    assert state.summary == f"checkpoint: {tmp_path / 'run' / 'last.pt'}"  # the operator's own summary
    assert state.status == "train finished" and state.last_error == ""
    argv = json.loads((tmp_path / "run" / "argv.json").read_text())
    assert argv == ["--data", str(tmp_path / "dataset"), "--out", str(tmp_path / "run"), "--device", "cpu",
                    "--init", "bundled", "--minutes", "0.5"]


def test_cancel_through_the_timer_keeps_the_checkpoint(settings, tmp_path: Path, monkeypatch) -> None:
    jobs = _start_train(tmp_path, "long", monkeypatch)
    state = bpy.context.window_manager.instseg_job
    deadline = time.monotonic() + 20
    while not state.has_loss:
        assert jobs.tick() is not None and time.monotonic() < deadline
        time.sleep(0.05)
    assert 0.0 < state.progress < 0.01 and state.eta_s > 0
    assert bpy.ops.instseg.cancel_job() == {"FINISHED"}
    _tick_until_done(jobs)
    assert state.status == "train cancelled (kept results)" and state.last_error == ""
    assert (tmp_path / "run" / "last.pt").is_file()


def test_cancel_escalates_to_kill_for_a_stubborn_child(settings, tmp_path: Path, monkeypatch) -> None:
    from blender_instseg.blender.ops import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "STOP_GRACE_S", 0.3)
    monkeypatch.setattr(jobs_module, "TERM_GRACE_S", 0.3)
    jobs = _start_train(tmp_path, "stubborn", monkeypatch)
    state = bpy.context.window_manager.instseg_job
    deadline = time.monotonic() + 20
    while not state.has_loss:
        assert jobs.tick() is not None and time.monotonic() < deadline
        time.sleep(0.05)
    proc = jobs._active.job.proc
    assert bpy.ops.instseg.cancel_job() == {"FINISHED"}
    _tick_until_done(jobs, limit_s=20)
    assert proc.returncode == -9
    assert state.status == "train cancelled" and not state.running and state.last_error == ""


def test_unregister_stops_a_running_child(settings, tmp_path: Path, monkeypatch) -> None:
    jobs = _start_train(tmp_path, "long", monkeypatch)
    proc = jobs._active.job.proc
    addon_utils.disable("blender_instseg", default_set=True)
    try:
        assert proc.poll() is not None and not jobs.is_running()
        assert not bpy.app.timers.is_registered(jobs.tick)
    finally:
        assert addon_utils.enable("blender_instseg", default_set=True) is not None


def test_evaluate_a_predictions_file_fills_metrics_and_worst_images(settings, shapes_dataset: Path,
                                                                    tmp_path: Path) -> None:
    gt = json.loads(shapes_dataset.read_text())
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
              "score": 0.9} for a in gt["annotations"]]
    preds = preds[1:]  # one object missed, so AP < 1 and one image is worse than the rest
    pred_path = tmp_path / "preds.json"
    pred_path.write_text(json.dumps(preds))
    settings.dataset_dir = str(shapes_dataset.parent)
    settings.predictions_path = str(pred_path)
    assert bpy.ops.instseg.evaluate(python=sys.executable) == {"FINISHED"}
    state = bpy.context.window_manager.instseg_job
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert state.has_metrics and state.report_dir == str(tmp_path / "run" / "eval")
    assert state.mask_ap == pytest.approx(metrics["segm"]["AP"]) and 0.5 < state.mask_ap < 1.0
    assert state.mask_ap50 == pytest.approx(metrics["segm"]["AP50"])
    assert state.boundary_ap == pytest.approx(metrics["boundary"]["AP"])
    assert len(state.worst_images) == len(metrics["worst_images"]) >= 1
    assert state.worst_images[0].image_id == gt["annotations"][0]["image_id"]
    assert state.worst_images[0].n_missed == 1
    assert bpy.ops.instseg.open_report() == {"FINISHED"}


def test_evaluate_without_checkpoint_or_dataset_reports(settings, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no annotations.json"):
        bpy.ops.instseg.evaluate(python=sys.executable)


def test_generate_dataset_runs_the_generator_in_a_child(settings, tmp_path: Path) -> None:
    s = settings
    s.num_images, s.seed, s.resolution, s.min_objects, s.max_objects, s.masks_only = 2, 7, 32, 2, 3, True
    s.dataset_dir = str(tmp_path / "gen")
    assert bpy.ops.instseg.generate_dataset() == {"FINISHED"}
    state = bpy.context.window_manager.instseg_job
    assert state.last_error == "" and state.progress == 1.0
    coco = json.loads((tmp_path / "gen" / "annotations.json").read_text())
    assert len(coco["images"]) == 2 and coco["images"][0]["width"] == 32
    masks = sorted((tmp_path / "gen" / "masks").glob("*.png"))
    assert len(masks) == 2
    s.min_objects, s.max_objects = 5, 2
    with pytest.raises(RuntimeError, match="Min Objects"):
        bpy.ops.instseg.generate_dataset()


def test_the_panel_generates_a_validation_split_and_evaluate_says_which_images_it_scored(
        settings, shapes_dataset: Path, tmp_path: Path) -> None:
    """Validation Fraction reaches the generator; the Evaluation numbers say whether they are on a
    held-out split or on the training images."""
    from blender_instseg.blender.ops.dataset import generate_args

    s = settings
    s.num_images, s.seed, s.resolution, s.min_objects, s.max_objects, s.masks_only = 10, 3, 32, 1, 2, True
    s.dataset_dir, s.val_fraction = str(tmp_path / "gen"), 0.2
    assert generate_args(bpy.context)[generate_args(bpy.context).index("--val-fraction") + 1] == "0.2"
    assert bpy.ops.instseg.generate_dataset() == {"FINISHED"}
    val = json.loads((tmp_path / "gen" / "annotations_val.json").read_text())
    assert len(val["images"]) == 2
    state = bpy.context.window_manager.instseg_job
    # predictions equal to the val ground truth: scored on the val split
    pred_path = tmp_path / "preds.json"
    pred_path.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"],
                                      "segmentation": a["segmentation"], "score": 0.9} for a in val["annotations"]]))
    s.predictions_path = str(pred_path)
    assert bpy.ops.instseg.evaluate(python=sys.executable) == {"FINISHED"}
    assert state.eval_source == "the val split (annotations_val.json)" and not state.eval_on_training_images
    # a dataset without a split: the numbers are on the training images, and the panel says so
    s.dataset_dir = str(shapes_dataset.parent)
    gt = json.loads(shapes_dataset.read_text())
    pred_path.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"],
                                      "segmentation": a["segmentation"], "score": 0.9} for a in gt["annotations"]]))
    assert bpy.ops.instseg.evaluate(python=sys.executable) == {"FINISHED"}
    assert state.eval_on_training_images and "the training images too" in state.eval_source
    s.val_fraction = 0.0
    assert "--val-fraction" not in generate_args(bpy.context)
    s.val_fraction = 0.1


def test_resume_trains_minutes_more_than_the_run_already_has(settings, tmp_path: Path) -> None:
    """--minutes is a run's whole budget: Resume with Minutes 0.5 on a run that trained 1.5 minutes
    asks for 2, so it trains 0.5 minutes more instead of stopping at once (issue 23 item 3)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"earlier run")
    (run / "events.jsonl").write_text('{"event":"progress","step":10,"train_seconds":30.0}\n'
                                      '{"event":"done","step":30,"train_seconds":90.0}\n', encoding="utf-8")
    settings.resume_training, settings.train_minutes, settings.epochs = True, 0.5, 0
    assert bpy.ops.instseg.train(python=_fake_python(tmp_path, "ok")) == {"FINISHED"}
    argv = json.loads((run / "argv.json").read_text())
    assert "--resume" in argv and argv[argv.index("--minutes") + 1] == "2"
    assert "--init" not in argv  # a resumed run keeps its own weights


def test_start_from_random_weights_passes_init_none(settings, tmp_path: Path) -> None:
    settings.train_init = "none"
    assert bpy.ops.instseg.train(python=_fake_python(tmp_path, "ok")) == {"FINISHED"}
    argv = json.loads((tmp_path / "run" / "argv.json").read_text())
    assert argv[argv.index("--init") + 1] == "none"
