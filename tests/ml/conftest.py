"""Fixtures for the model tests: tiny drawn-shapes datasets and one short real training run, shared per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blender_instseg.core import protocol
from tests.shapes import make_shapes_dataset

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python -m blender_instseg.ml`` exactly as the Blender side does (a child process)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "blender_instseg.ml", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def events(stdout: str) -> list[protocol.Event]:
    return [protocol.parse_line(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ml_shapes") / "shapes"
    make_shapes_dataset(root, n_images=8, size=64, seed=3)
    return root


@pytest.fixture(scope="session")
def trained_run(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-step run on 64x64 shapes; returns RUN_DIR (last.pt inside)."""
    run_dir = tmp_path_factory.mktemp("ml_run") / "run"
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run_dir), "--steps", "12", "--batch-size", "2",
                   "--image-size", "64", "--checkpoint-every", "5", "--lr", "3e-3")
    assert proc.returncode == 0, proc.stderr
    return run_dir


def fit_one_image_best_iou(model, images, targets, steps: int, lr: float = 3e-3):  # type: ignore[no-untyped-def]
    """Train ``model`` on one batch for ``steps`` AdamW steps, then predict it: for each ground-truth
    instance of image 0, the best mask IoU among the top 8 detections of the same class."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    h, w = images.shape[-2:]
    res = model.postprocess(model(images), 0, (h, w), (h, w))
    masks, labels = res["masks"][:8], res["labels"][:8]
    gt = targets[0]["masks"].bool()
    iou = (masks[:, None] & gt[None]).flatten(2).sum(2) / (masks[:, None] | gt[None]).flatten(2).sum(2).clamp(min=1)
    same_class = labels[:, None] == targets[0]["labels"][None]
    return (iou * same_class).max(0).values
