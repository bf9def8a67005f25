"""The trainer's options, one each, on the 8-image 64x64 shapes set: --minutes, --save-minutes,
--eval-every, --val-split, --workers, the cuda-unavailable error, the learning-rate schedule and
the deletion of old checkpoints. Each runs the CLI as a child, as the Blender side does.

No test measures time: --minutes is checked by what the trainer records (its training time reached
the budget, the run was not stopped), not by how long the test took.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from blender_instseg.core import protocol
from blender_instseg.ml.train import lr_at
from blender_instseg.ml.train_config import TrainConfig
from tests.ml.conftest import events, run_cli

pytestmark = pytest.mark.torch

TINY = ["--batch-size", "2", "--image-size", "64", "--device", "cpu"]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def checkpointing_run(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[protocol.Event]]:
    """6 steps with a checkpoint every step, a val set of 2 images evaluated every 2 steps, and
    minute marks at 0.001 (0.06 s of training: reached within the first steps) and 1000 (never reached)."""
    run_dir = tmp_path_factory.mktemp("ml_options") / "run"
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run_dir), "--steps", "6", *TINY,
                   "--checkpoint-every", "1", "--eval-every", "2", "--val-fraction", "0.25",
                   "--save-minutes", "0.001", "1000")
    assert proc.returncode == 0, proc.stderr
    return run_dir, events(proc.stdout)


def test_only_the_newest_step_checkpoints_are_kept(checkpointing_run: tuple[Path, list[protocol.Event]]) -> None:
    run_dir, evs = checkpointing_run
    saved = [Path(e.get("path")).name for e in evs if e.event == "checkpoint"]
    # every step, the last one twice: saved again after the final evaluation, to keep it in the history
    assert [n for n in saved if n.startswith("checkpoint-")] == [f"checkpoint-{s:06d}.pt" for s in (1, 2, 3, 4, 5, 6, 6)]
    # TrainConfig.keep_checkpoints (3) of them stay; minute-*.pt snapshots and last.pt are not rotated
    assert sorted(p.name for p in run_dir.glob("*.pt")) == [
        "checkpoint-000004.pt", "checkpoint-000005.pt", "checkpoint-000006.pt", "last.pt", "minute-000.00.pt"]
    for step in (4, 5, 6):
        assert torch.load(run_dir / f"checkpoint-{step:06d}.pt", weights_only=True)["step"] == step


def test_save_minutes_snapshots_when_training_time_reaches_each_mark(
        checkpointing_run: tuple[Path, list[protocol.Event]]) -> None:
    run_dir, evs = checkpointing_run
    minute = [e for e in evs if e.event == "checkpoint" and Path(e.get("path")).name.startswith("minute-")]
    assert [Path(e.get("path")).name for e in minute] == ["minute-000.00.pt"]  # once, named by the mark
    snap = torch.load(run_dir / "minute-000.00.pt", weights_only=True)
    assert 1 <= snap["step"] == minute[0].get("step") <= 6
    assert snap["train_seconds"] >= 0.06  # saved once training time reached the mark
    assert snap["train_config"]["save_minutes"] == [0.001, 1000.0]
    assert not list(run_dir.glob("minute-1000*"))  # 1000 minutes of training never came


def test_eval_every_evaluates_during_the_run_and_at_the_end(
        checkpointing_run: tuple[Path, list[protocol.Event]]) -> None:
    run_dir, evs = checkpointing_run
    assert "6 train / 2 val images" in next(e.message for e in evs if e.event == "log")
    evals = [e for e in evs if e.event == "eval"]
    assert [e.get("step") for e in evals] == [2, 4, 6]  # every 2 steps, and once at the end (not twice)
    assert all(0.0 <= e.get("metrics")["mask_AP"] <= 1.0 for e in evals)
    history = torch.load(run_dir / "last.pt", weights_only=True)["history"]
    assert [h["step"] for h in history] == [2, 4, 6]
    assert [h["mask_AP"] for h in history] == [e.get("metrics")["mask_AP"] for e in evals]


def test_minutes_stops_on_training_time(shapes_root: Path, tmp_path: Path) -> None:
    """A budget of 0.6 s of training time ends the run at the first step that reaches it: by time, not
    by a stop, and not before (the step before it had less), saved like any finished run."""
    budget_min = 0.01
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run_dir), "--minutes", str(budget_min), *TINY,
                   "--checkpoint-every", "1")
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    done = evs[-1]
    assert done.event == "done" and done.get("stopped") is False and done.get("reason") is None
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["train_config"]["minutes"] == budget_min and ckpt["train_config"]["steps"] is None
    steps = ckpt["step"]
    assert steps == done.get("step") >= 1
    assert ckpt["train_seconds"] >= 60 * budget_min  # it ran until the budget was spent
    if steps > 1:  # and stopped at the first step that spent it
        before = torch.load(run_dir / f"checkpoint-{steps - 1:06d}.pt", weights_only=True)
        assert before["step"] == steps - 1 and before["train_seconds"] < 60 * budget_min
    last = [e for e in evs if e.event == "progress"][-1]
    assert last.get("step") == steps and last.get("eta_s") == 0.0  # nothing left of the budget


def test_val_split_names_the_validation_file(shapes_root: Path, tmp_path: Path) -> None:
    """--val-split NAME evaluates on annotations_NAME.json and trains on all of annotations.json."""
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "images").symlink_to(shapes_root / "images")
    coco = json.loads((shapes_root / "annotations.json").read_text())
    (ds / "annotations.json").write_text(json.dumps(coco))
    keep = {im["id"] for im in coco["images"][:3]}
    holdout = {**coco, "images": [im for im in coco["images"] if im["id"] in keep],
               "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}
    (ds / "annotations_holdout.json").write_text(json.dumps(holdout))
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--data", str(ds), "--out", str(run_dir), "--steps", "2", *TINY, "--checkpoint-every", "0",
                   "--val-split", "holdout")
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    assert "8 train / 3 val images" in next(e.message for e in evs if e.event == "log")
    evals = [e for e in evs if e.event == "eval"]
    assert [e.get("step") for e in evals] == [2] and evs[-1].get("metrics") == evals[0].get("metrics")
    missing = run_cli("train", "--data", str(ds), "--out", str(tmp_path / "other"), "--steps", "1", *TINY,
                      "--val-split", "nope")
    assert missing.returncode == 2 and not (tmp_path / "other" / "last.pt").exists()
    assert missing.stderr.strip().splitlines() == [f"error: validation split not found: {ds / 'annotations_nope.json'}"]


def test_loader_workers_give_the_same_weights(trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    """Data order and augmentation depend on (seed, step) only, so worker processes change nothing:
    the same 12 steps as the shared run (in-process loading) give the same weights, bit for bit."""
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run_dir), "--steps", "12", "--batch-size", "2",
                   "--image-size", "64", "--checkpoint-every", "5", "--lr", "3e-3", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "config.json").read_text())["train_config"]["workers"] == 2
    ref, got = _weights(trained_run), _weights(run_dir)
    assert ref.keys() == got.keys()
    for k, v in ref.items():
        assert torch.equal(v, got[k]), f"--workers 2 changed {k}"


def test_cuda_without_a_gpu_is_a_one_line_error(shapes_root: Path, tmp_path: Path) -> None:
    # no GPU visible even on a machine that has one: the error, not a silent fallback to the CPU
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "run"), "--steps", "1",
                   "--device", "cuda", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --device cuda was requested but torch sees no CUDA GPU"]
    assert [(e.event, e.message) for e in events(proc.stdout)] == [
        ("error", "--device cuda was requested but torch sees no CUDA GPU")]
    assert not (tmp_path / "run" / "last.pt").exists()


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_5_percent() -> None:
    cfg = TrainConfig(data="d", out="o", lr=1.0, warmup_steps=4)
    # warmup: (step + 1) / warmup_steps of the peak, whatever the progress
    assert [lr_at(cfg, s, 0.5) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # then by progress through the run: 0.05 + 0.95 * (1 + cos(pi * p)) / 2 of the peak
    for p, want in ((0.0, 1.0), (0.25, 0.05 + 0.95 * (1 + math.cos(math.pi / 4)) / 2), (0.5, 0.525), (1.0, 0.05)):
        assert lr_at(cfg, 10, p) == pytest.approx(want, abs=1e-12)
    assert lr_at(cfg, 10, 3.0) == pytest.approx(0.05)  # past the end (a resumed run asked for more): the floor
    decay = [lr_at(cfg, 10, p / 100) for p in range(101)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_the_trainer_steps_along_the_schedule(trained_run: Path) -> None:
    """Each progress event reports the rate its step used: lr_at(step before it, progress before it)."""
    ckpt = torch.load(trained_run / "last.pt", weights_only=True)
    cfg = TrainConfig(**ckpt["train_config"])
    assert cfg.lr == 3e-3 and cfg.steps == 12
    progress = [protocol.parse_line(line) for line in (trained_run / "events.jsonl").read_text().splitlines()]
    progress = [e for e in progress if e.event == "progress"]
    assert len(progress) >= 2
    for e in progress:
        s = e.get("step") - 1
        assert e.get("lr") == pytest.approx(lr_at(cfg, s, s / 12), rel=1e-12)
