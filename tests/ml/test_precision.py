"""train --precision on the command line: bad names, a bf16 run's checkpoints and resume. (The network
under bf16 autocast, in process: tests/ml/test_model.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from blender_instseg.ml.device import check_precision
from tests.ml.conftest import events, run_cli

pytestmark = pytest.mark.torch


def test_unknown_precisions_are_one_line_errors(shapes_root: Path, tmp_path: Path) -> None:
    assert check_precision("BF16") == "bf16" and check_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        check_precision("fp16")
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "run"), "--steps", "1",
                   "--precision", "fp16")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: unknown precision 'fp16'; use fp32 or bf16"
    assert not (tmp_path / "run").exists()


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
