"""DistributedDataParallel through torchrun: two CPU processes (gloo), rank 0 alone writes and reports.

What each rank does is seen through the trainer's step trace (INSTSEG_TRAIN_TRACE, ml/train.py): per
step, digests of the images a rank trained on and of its weights after the step. Two unsynchronised
processes would pass the output checks; they fail the trace checks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from blender_instseg.core import protocol
from tests.ml.conftest import ROOT, events

pytestmark = pytest.mark.torch


def _torchrun(shapes_root: Path, run_dir: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "blender_instseg.ml", "train", "--data", str(shapes_root), "--out", str(run_dir),
            "--steps", str(steps), "--batch-size", "2", "--image-size", "64", "--device", "cpu",
            "--checkpoint-every", "0"]


def _env(trace: Path) -> dict[str, str]:
    from blender_instseg.ml.train import TRACE_ENV

    return {**os.environ, "OMP_NUM_THREADS": "1", TRACE_ENV: str(trace)}


def _trace(trace: Path, rank: int) -> list[dict]:
    path = trace / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def ddp_run(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[protocol.Event]]:
    """3 steps on 2 ranks x 2 images: steps 1-2 are epoch 0 (8 images), step 3 starts epoch 1."""
    tmp = tmp_path_factory.mktemp("ddp")
    run_dir, trace = tmp / "run", tmp / "trace"
    proc = subprocess.run(_torchrun(shapes_root, run_dir, 3), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_env(trace))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir, trace, events(proc.stdout)


def test_torchrun_two_cpu_ranks(ddp_run: tuple[Path, Path, list[protocol.Event]]) -> None:
    run_dir, _, evs = ddp_run
    done = [e for e in evs if e.event == "done"]
    assert len(done) == 1 and done[0].get("step") == 3  # only rank 0 speaks
    progress = [e for e in evs if e.event == "progress"]
    assert progress[-1].get("epoch") == pytest.approx(1.5)  # 8 images / (2 ranks x 2) = 2 steps per epoch
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and not any(k.startswith("module.") for k in ckpt["model"])


def test_ranks_train_on_disjoint_slices_of_each_batch(ddp_run: tuple[Path, Path, list[protocol.Event]]) -> None:
    _, trace, _ = ddp_run
    r0, r1 = _trace(trace, 0), _trace(trace, 1)
    assert [r["step"] for r in r0] == [r["step"] for r in r1] == [1, 2, 3]
    for a, b in zip(r0, r1):
        assert len(a["images"]) == len(b["images"]) == 2
        assert not set(a["images"]) & set(b["images"]), f"both ranks trained on the same image in step {a['step']}"
    # an image's augmentation depends on (image, epoch) only, so one digest is one image of epoch 0:
    # the 4 slices of epoch 0 together hold all 8 images, each once
    epoch0 = [d for r in r0[:2] + r1[:2] for d in r["images"]]
    assert len(epoch0) == len(set(epoch0)) == 8


def test_ranks_keep_identical_weights(ddp_run: tuple[Path, Path, list[protocol.Event]]) -> None:
    """Gradients are averaged across ranks, so after every step both hold the same weights (and the
    weights do move), and they are the live weights rank 0 saves."""
    from blender_instseg.ml.models import build_model, config_from_dict
    from blender_instseg.ml.train import StepTrace

    run_dir, trace, _ = ddp_run
    r0, r1 = _trace(trace, 0), _trace(trace, 1)
    assert [a["weights"] for a in r0] == [b["weights"] for b in r1]
    assert len({a["weights"] for a in r0}) == 3
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    names = [n for n, _ in build_model(config_from_dict(ckpt["model_config"])).named_parameters()]
    assert StepTrace._digest(*(ckpt["train_weights"][n] for n in names)) == r0[-1]["weights"]


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (torchrun's agent starts the ranks), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(text.split()[0])] = int(text.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found


def _rank_pid(agent: int, rank: int) -> int:
    for pid in _descendants(agent):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and f"LOCAL_RANK={rank}".encode() in env:
            return pid
    raise AssertionError(f"no process of rank {rank} under torchrun {agent}")


def test_a_stop_on_rank_1_stops_both_ranks(shapes_root: Path, tmp_path: Path) -> None:
    """SIGTERM to rank 1 alone: rank 0 stops at the same step (its stop reason says why), saves, and
    torchrun exits 0; nothing hangs in a collective waiting for the other rank."""
    run_dir, trace = tmp_path / "run", tmp_path / "trace"
    proc = subprocess.Popen(_torchrun(shapes_root, run_dir, 100000), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(trace), start_new_session=True)
    try:
        deadline = time.monotonic() + 240  # a guard against a hang, not a measurement
        while not _trace(trace, 1):  # rank 1 has finished a step, so its stop handlers are installed
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "rank 1 never finished a step"
            time.sleep(0.1)
        os.kill(_rank_pid(proc.pid, 1), signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    done = [e for e in events(out) if e.event == "done"]
    assert len(done) == 1 and done[0].get("stopped") is True and done[0].get("reason") == "stop on another rank"
    step = done[0].get("step")
    r0, r1 = _trace(trace, 0), _trace(trace, 1)
    assert r0[-1]["step"] == r1[-1]["step"] == step < 100000
    assert r0[-1]["weights"] == r1[-1]["weights"]
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == step
