"""The ml CLI as a child process, parsed with core.protocol exactly as the Blender side parses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from blender_instseg.core import protocol
from tests.ml.conftest import ROOT, events, run_cli

pytestmark = pytest.mark.torch


def test_train_streams_protocol_events_and_writes_a_safe_checkpoint(trained_run: Path) -> None:
    lines = (trained_run / "events.jsonl").read_text().splitlines()
    evs = [protocol.parse_line(line) for line in lines]
    assert all(e.event != "log" or e.message.startswith("training on") for e in evs)  # nothing unparsed
    progress = [e for e in evs if e.event == "progress"]
    assert progress[0].get("step") == 1 and progress[-1].get("step") == 12
    assert all(e.get("total") == 12 and isinstance(e.get("loss"), float) and e.get("eta_s") is not None for e in progress)
    steps = [e.get("step") for e in progress]
    assert steps == sorted(steps)
    ckpts = [e for e in evs if e.event == "checkpoint"]
    assert [e.get("step") for e in ckpts] == [5, 10, 12]
    done = evs[-1]
    assert done.event == "done" and done.get("step") == 12 and done.get("stopped") is False
    assert Path(done.get("checkpoint")).is_file()
    ckpt = torch.load(trained_run / "last.pt", weights_only=True)
    assert ckpt["step"] == 12 and ckpt["categories"][0]["name"] == "disc"
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model_config"]["num_classes"] == 3 and config["train_config"]["image_size"] == 64
    assert sorted(p.name for p in trained_run.glob("checkpoint-*.pt")) == [
        "checkpoint-000005.pt", "checkpoint-000010.pt", "checkpoint-000012.pt"]


def test_resume_continues_the_exact_step_sequence(shapes_root: Path, tmp_path: Path) -> None:
    common = ["--data", str(shapes_root), "--batch-size", "2", "--image-size", "64", "--no-point-head",
              "--checkpoint-every", "0"]
    straight = run_cli("train", *common, "--out", str(tmp_path / "a"), "--steps", "6")
    assert straight.returncode == 0, straight.stderr
    first = run_cli("train", *common, "--out", str(tmp_path / "b"), "--steps", "3")
    assert first.returncode == 0, first.stderr
    again = run_cli("train", *common, "--out", str(tmp_path / "b"), "--steps", "6")
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cli("train", *common, "--out", str(tmp_path / "b"), "--steps", "6", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    progress = [e for e in events(resumed.stdout) if e.event == "progress"]
    assert progress[0].get("step") == 4 and progress[-1].get("step") == 6
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for key in ("model", "train_weights"):  # the moving average (the default) and the live weights
        for k, v in a[key].items():
            torch.testing.assert_close(v, b[key][k], rtol=1e-5, atol=1e-6, msg=f"{key} differ after resume: {k}")


def test_sigkill_mid_training_then_resume_gives_the_uninterrupted_weights(trained_run: Path, shapes_root: Path,
                                                                          tmp_path: Path) -> None:
    """A trainer killed without warning (no stop, no final save) between checkpoints, then resumed with
    the same command plus --resume, ends with the weights of the uninterrupted run, bit for bit."""
    from blender_instseg.ml.train import TRACE_ENV

    # trained_run's command line: 12 steps, a checkpoint every 5
    args = ["train", "--data", str(shapes_root), "--out", str(tmp_path / "run"), "--steps", "12", "--batch-size", "2",
            "--image-size", "64", "--checkpoint-every", "5", "--lr", "3e-3"]
    trace = tmp_path / "trace" / "rank0.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "blender_instseg.ml", *args], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", TRACE_ENV: str(tmp_path / "trace")})
    try:
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while not (trace.is_file() and len(trace.read_text().splitlines()) >= 6):  # past the step-5 checkpoint
            assert proc.poll() is None, "the trainer ended before it could be killed"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        proc.kill()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not [e for e in events(out) if e.event == "done"]
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"]
    assert saved in (5, 10)  # the last checkpoint before the kill; the steps after it are lost

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    progress = [e for e in events(resumed.stdout) if e.event == "progress"]
    assert progress[0].get("step") == saved + 1 and progress[-1].get("step") == 12
    ref = torch.load(trained_run / "last.pt", weights_only=True)
    got = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert got["step"] == ref["step"] == 12
    for key in ("model", "train_weights"):  # the moving average and the live weights
        assert ref[key].keys() == got[key].keys()
        for k, v in ref[key].items():
            assert torch.equal(v, got[key][k]), f"{key} differ after the kill and resume: {k}"


def test_init_starts_a_new_run_from_a_checkpoints_weights(trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    """--init: the network and weights of CKPT, but step 0 and a fresh optimizer (fine-tuning on more data)."""
    src = torch.load(trained_run / "last.pt", weights_only=True)
    common = ["--data", str(shapes_root), "--batch-size", "2", "--image-size", "64", "--checkpoint-every", "0",
              "--lr", "0"]
    frozen = run_cli("train", *common, "--out", str(tmp_path / "ft"), "--steps", "2", "--init", str(trained_run / "last.pt"))
    assert frozen.returncode == 0, frozen.stderr
    progress = [e for e in events(frozen.stdout) if e.event == "progress"]
    assert progress[0].get("step") == 1 and progress[-1].get("step") == 2
    ft = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    assert ft["step"] == 2 and ft["model_config"] == src["model_config"]
    assert ft["train_config"]["init"] == str(trained_run / "last.pt")
    for k, v in src["model"].items():  # lr 0: the weights are exactly the --init ones
        torch.testing.assert_close(ft["model"][k], v, msg=f"--init did not load {k}")
    both = run_cli("train", *common, "--out", str(tmp_path / "x"), "--steps", "1", "--init", str(trained_run / "last.pt"),
                   "--resume")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    bad = run_cli("train", *common, "--out", str(tmp_path / "y"), "--steps", "1", "--init", str(trained_run / "last.pt"),
                  "--model-config", "fpn_channels=32")
    assert bad.returncode == 2 and "cannot change the network" in bad.stderr and not (tmp_path / "y" / "last.pt").exists()


def _start_long_training(shapes_root: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "blender_instseg.ml", "train", "--data", str(shapes_root),
                             "--out", str(out), "--steps", "100000", "--batch-size", "2", "--image-size", "64",
                             "--checkpoint-every", "0"],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_step(proc: subprocess.Popen[str], step: int) -> list[protocol.Event]:
    seen = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = protocol.parse_line(line)
        seen.append(ev)
        if ev.event == "progress" and ev.get("step", 0) >= step:
            return seen
        assert time.monotonic() < deadline, "no progress"
    raise AssertionError("trainer exited early: " + (proc.stderr.read() if proc.stderr else ""))


@pytest.mark.parametrize("how", ["stdin", "sigterm"])
def test_stop_leaves_a_loadable_checkpoint(shapes_root: Path, tmp_path: Path, how: str) -> None:
    proc = _start_long_training(shapes_root, tmp_path / "run")
    try:
        _wait_for_step(proc, 2)
        if how == "stdin":
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    done = [e for e in events(out) if e.event == "done"]
    assert done and done[-1].get("stopped") is True
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert 2 <= ckpt["step"] == done[-1].get("step") < 100000


def test_predict_on_a_dataset_gives_coco_results(trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.json"
    proc = run_cli("predict", "--checkpoint", str(trained_run / "last.pt"), "--images", str(shapes_root / "annotations.json"),
                   "--out", str(out), "--score-threshold", "0.0", "--overlays", str(tmp_path / "ov"))
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    assert evs[-1].event == "done" and evs[-1].get("images") == 8
    preds = json.loads(out.read_text())
    gt = COCO(str(shapes_root / "annotations.json"))
    assert {p["image_id"] for p in preds} <= set(gt.getImgIds())
    assert {p["category_id"] for p in preds} <= set(gt.getCatIds())
    assert preds, "score threshold 0 keeps every candidate of the 12-step model"
    dt = gt.loadRes(preds)
    assert len(dt.getAnnIds()) == len(preds)
    for p in preds[:20]:
        m = mask_utils.decode(p["segmentation"])
        assert m.shape == (64, 64) and m.any()
        assert np.allclose(mask_utils.toBbox(p["segmentation"]), p["bbox"], atol=0.01)
    assert len(list((tmp_path / "ov").glob("*.png"))) == 8


def test_predict_raw_images_assigns_ids_in_path_order(trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("b.png", "a.png"):
        (raw / name).write_bytes((shapes_root / "images" / "000001.png").read_bytes())
    out = tmp_path / "p.json"
    proc = run_cli("predict", "--checkpoint", str(trained_run), "--images", str(raw), "--out", str(out),
                   "--score-threshold", "0.0", "--no-refine")
    assert proc.returncode == 0, proc.stderr
    index = json.loads((tmp_path / "p.images.json").read_text())
    assert [(im["id"], Path(im["file_name"]).name) for im in index["images"]] == [(1, "a.png"), (2, "b.png")]
    preds = json.loads(out.read_text())
    assert preds
    by_image = {i: sorted((p["score"], p["segmentation"]["counts"]) for p in preds if p["image_id"] == i) for i in (1, 2)}
    assert by_image[1] == by_image[2]  # same pixels -> same predictions


def test_evaluate_writes_the_core_report(trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    proc = run_cli("evaluate", "--checkpoint", str(trained_run / "last.pt"), "--data", str(shapes_root),
                   "--out", str(tmp_path / "report"), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "AP" in metrics["segm"] and "AP" in metrics["boundary"]
    assert (tmp_path / "report" / "predictions.json").is_file()
    done = events(proc.stdout)[-1]
    assert done.event == "done" and "mask_AP" in done.get("metrics")


def test_predict_without_a_threshold_uses_the_checkpoints_validated_one(trained_run: Path, shapes_root: Path,
                                                                        tmp_path: Path) -> None:
    """train records the best-F1 score threshold of its last validation; predict (and --serve) default to it,
    and to 0.3 for a checkpoint without one. Score scales differ per model, so a fixed default misleads."""
    from blender_instseg.ml.checkpoint import FALLBACK_SCORE_THRESHOLD, score_threshold_of

    run = tmp_path / "val_run"
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run), "--steps", "3", "--batch-size", "2",
                   "--image-size", "64", "--val-fraction", "0.25")
    assert proc.returncode == 0, proc.stderr
    last = torch.load(run / "last.pt", weights_only=True)["history"][-1]
    assert last["step"] == 3 and 0.0 <= last["score_threshold_f1"] <= 1.0 and 0.0 <= last["f1"] <= 1.0
    ckpt = torch.load(trained_run / "last.pt", weights_only=True)  # trained without a validation set
    assert score_threshold_of(ckpt)[0] == FALLBACK_SCORE_THRESHOLD
    ckpt["history"] = [{"step": 5, "score_threshold_f1": 0.9}, {"step": 12, "score_threshold_f1": 0.02},
                       {"step": 12, "mask_AP": 0.1}]
    tuned = tmp_path / "tuned.pt"
    torch.save(ckpt, tuned)
    assert score_threshold_of(ckpt)[0] == 0.02  # the latest record that has one
    images = ["--images", str(shapes_root / "annotations.json"), "--no-refine"]
    proc = run_cli("predict", "--checkpoint", str(tuned), "--out", str(tmp_path / "auto.json"), *images)
    assert proc.returncode == 0, proc.stderr
    log = [e for e in events(proc.stdout) if e.event == "log"]
    assert log[0].get("score_threshold") == 0.02 and "best F1 on the validation set at step 12" in log[0].message
    auto = json.loads((tmp_path / "auto.json").read_text())
    assert all(p["score"] >= 0.02 for p in auto)
    proc = run_cli("predict", "--checkpoint", str(tuned), "--out", str(tmp_path / "given.json"), *images,
                   "--score-threshold", "0.02")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "given.json").read_text()) == auto
    assert [e for e in events(proc.stdout) if e.event == "log"][0].message.endswith("--score-threshold")
