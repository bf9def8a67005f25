"""Mixed-precision training (train --precision): bf16 autocast runs the network in bfloat16, computes
the losses in fp32 close to the fp32 ones, and keeps weights and checkpoints in fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blender_instseg.ml.data import TrainDataset, collate, load_coco
from blender_instseg.ml.device import autocast, check_precision
from blender_instseg.ml.models import ModelConfig, build_model
from tests.ml.conftest import events, run_cli

pytestmark = pytest.mark.torch

CPU = torch.device("cpu")


def test_unknown_precisions_are_one_line_errors(shapes_root: Path, tmp_path: Path) -> None:
    assert check_precision("BF16") == "bf16" and check_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        check_precision("fp16")
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "run"), "--steps", "1",
                   "--precision", "fp16")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: unknown precision 'fp16'; use fp32 or bf16"
    assert not (tmp_path / "run").exists()


def test_bf16_runs_the_network_in_bf16_with_losses_close_to_fp32_and_learns(shapes_root: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=3, point_head=True)
    model = build_model(cfg).train()
    src = load_coco(shapes_root / "annotations.json")
    ds = TrainDataset(src, src.category_ids, 64, cfg.grids, cfg.scale_ranges, cfg.sigma, seed=0)
    images, targets = collate([ds[(i, 0)] for i in range(4)])
    torch.manual_seed(1)
    ref = model(images, targets)
    torch.manual_seed(1)
    with autocast("bf16", CPU):
        out = model.features(images)
        low = model.loss(out, targets)
    assert out["mask_feat"].dtype == torch.bfloat16 and out["cate"].dtype == torch.bfloat16
    assert set(low) == set(ref)
    for k, v in low.items():
        assert v.dtype == torch.float32, k
        a, b = float(v.detach()), float(ref[k].detach())
        assert abs(a - b) <= 0.05 * abs(b) + 1e-3, (k, a, b)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        with autocast("bf16", CPU):
            loss = sum(v.float() for v in model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
               for p in model.parameters() if p.requires_grad and p.grad is not None)


def test_a_bf16_run_saves_fp32_weights_records_its_precision_and_resumes_with_it(shapes_root: Path,
                                                                                tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run), "--steps", "3", "--batch-size", "2",
                   "--image-size", "64", "--precision", "bf16")
    assert proc.returncode == 0, proc.stderr
    assert any(e.event == "log" and "bf16" in e.data.get("message", "") for e in events(proc.stdout))
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["train_config"]["precision"] == "bf16"
    assert all(v.dtype != torch.bfloat16 for v in [*ckpt["model"].values(), *ckpt["train_weights"].values()])
    resumed = run_cli("train", "--data", str(shapes_root), "--out", str(run), "--steps", "5", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert any(e.event == "log" and "bf16" in e.data.get("message", "") for e in events(resumed.stdout))
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 5
