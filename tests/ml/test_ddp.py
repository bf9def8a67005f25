"""DistributedDataParallel through torchrun: two CPU processes (gloo), rank 0 alone writes and reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ml.conftest import ROOT, events

pytestmark = pytest.mark.torch


def test_torchrun_two_cpu_ranks(shapes_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "blender_instseg.ml", "train", "--data", str(shapes_root), "--out", str(run_dir),
                           "--steps", "3", "--batch-size", "2", "--image-size", "64", "--device", "cpu",
                           "--checkpoint-every", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    evs = events(proc.stdout)
    done = [e for e in evs if e.event == "done"]
    assert len(done) == 1 and done[0].get("step") == 3  # only rank 0 speaks
    progress = [e for e in evs if e.event == "progress"]
    assert progress[-1].get("epoch") == pytest.approx(1.5)  # 8 images / (2 ranks x 2) = 2 steps per epoch
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and not any(k.startswith("module.") for k in ckpt["model"])
