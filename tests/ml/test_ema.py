"""The weights' moving average (ml/ema.py): its arithmetic, the default run keeps one and predicts with it, and
runs saved before it resume without. (Exact resume with it: tests/ml/test_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from blender_instseg.ml.checkpoint import load_model, save_checkpoint
from blender_instseg.ml.ema import WeightEMA, decay_at
from tests.ml.conftest import run_cli

pytestmark = pytest.mark.torch


def test_decay_ramps_up_from_the_first_step_to_the_set_decay() -> None:
    assert decay_at(0.99, 1) == pytest.approx(2 / 11)
    assert decay_at(0.99, 100) == pytest.approx(101 / 110)
    assert decay_at(0.99, 10_000) == 0.99


def test_update_averages_float_tensors_and_copies_the_others() -> None:
    live = nn.Linear(2, 1)
    live.register_buffer("count", torch.tensor(3))
    with torch.no_grad():
        live.weight.fill_(1.0)
        live.bias.fill_(0.0)
    ema = WeightEMA(live, decay=0.5)
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training
    with torch.no_grad():
        live.weight.fill_(3.0)
        live.bias.fill_(4.0)
        live.count.fill_(7)
    ema.update(live, step=1000)  # decay 0.5 by then
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 2.0))
    torch.testing.assert_close(ema.model.bias, torch.full((1,), 2.0))
    assert int(ema.model.count) == 7
    ema.update(live, step=1)  # decay 2/11: mostly the live weights
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 2 * 2 / 11 + 3 * 9 / 11))
    with pytest.raises(ValueError, match="EMA decay"):
        WeightEMA(live, decay=1.0)


def test_runs_average_by_default_and_runs_saved_before_resume_without(trained_run: Path, shapes_root: Path,
                                                                     tmp_path: Path) -> None:
    ckpt = torch.load(trained_run / "last.pt", weights_only=True)
    assert ckpt["train_config"]["ema_decay"] == 0.99 and "train_weights" in ckpt
    live = ckpt["train_weights"]
    moved = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.equal(v, live[k])]
    assert moved, "the averaged weights equal the live ones"
    model, _ = load_model(trained_run / "last.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), f"predict does not load the averaged weights: {k}"
    off = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "off"), "--steps", "1", "--batch-size",
                  "2", "--image-size", "64", "--ema-decay", "0")
    assert off.returncode == 0, off.stderr
    assert "train_weights" not in torch.load(tmp_path / "off" / "last.pt", weights_only=True)
    # a checkpoint from before the average existed: live weights in "model", no ema_decay in its recipe
    old = dict(ckpt, model=ckpt["train_weights"], train_config={k: v for k, v in ckpt["train_config"].items()
                                                                if k != "ema_decay"})
    del old["train_weights"], old["format"]
    save_checkpoint(tmp_path / "old" / "last.pt", old)
    resumed = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "old"), "--steps", "13", "--resume",
                      "--checkpoint-every", "0")
    assert resumed.returncode == 0, resumed.stderr
    after = torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    assert after["step"] == 13 and after["train_config"]["ema_decay"] == 0.0 and "train_weights" not in after


@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_an_ema_decay_outside_0_1_is_a_one_line_error(shapes_root: Path, tmp_path: Path, value: str) -> None:
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "run"), "--steps", "1",
                   "--ema-decay", value)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: --ema-decay must be in [0, 1)")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
