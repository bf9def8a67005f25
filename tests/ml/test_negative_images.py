"""An image without annotations (the generator can write one; validate accepts it) trains as a
negative image: every architecture of the zoo gets finite losses and gradients from it, alone in a
batch or beside positives, and ``train`` runs on a dataset holding some."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from blender_instseg.ml.data import InstanceDataset, collate, load_coco_source
from blender_instseg.ml.models import ARCHITECTURES, build_model
from tests.ml.conftest import run_cli

pytestmark = pytest.mark.torch

NEGATIVE_IDS = (2, 3)  # image ids whose annotations are removed


@pytest.fixture(scope="module")
def with_negatives(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("neg") / "shapes"
    shutil.copytree(shapes_root, root)
    coco = json.loads((root / "annotations.json").read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in NEGATIVE_IDS]
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def _finite_step(model: torch.nn.Module, batch: list) -> None:
    images, targets = collate(batch)
    model.train()
    model.zero_grad(set_to_none=True)
    parts = model(images, targets)
    loss = sum(v.float() for v in parts.values())
    assert torch.isfinite(loss), {k: float(v) for k, v in parts.items()}
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_model_trains_on_negative_images(arch: str, with_negatives: Path) -> None:
    cfg_cls, model_cls = ARCHITECTURES[arch]
    cfg = cfg_cls(num_classes=3)
    src = load_coco_source(with_negatives / "annotations.json")
    negatives = [i for i, r in enumerate(src.records) if r.image_id in NEGATIVE_IDS]
    positive = next(i for i, r in enumerate(src.records) if r.anns)
    ds = InstanceDataset(src, src.category_ids, 64, seed=0, make_targets=model_cls.make_targets(cfg),
                         amodal=model_cls.needs_amodal, crop_bank=model_cls.crop_bank(cfg))
    sample = ds[(negatives[0], 0)][1]
    assert len(sample["labels"]) == 0 and sample["masks"].shape == (0, 64, 64)
    torch.manual_seed(0)
    model = build_model(cfg)
    _finite_step(model, [ds[(negatives[0], 0)], ds[(positive, 0)]])
    _finite_step(model, [ds[(i, 1)] for i in negatives])
    # a dataset of negatives only (no objects at all for the crop bank to draw from)
    only = type(src)(src.path, src.categories, [src.records[i] for i in negatives])
    ds_neg = InstanceDataset(only, src.category_ids, 64, seed=0, make_targets=model_cls.make_targets(cfg),
                             amodal=model_cls.needs_amodal, crop_bank=model_cls.crop_bank(cfg))
    _finite_step(model, [ds_neg[(0, 0)], ds_neg[(1, 0)]])


def test_train_cli_runs_on_a_dataset_with_negative_images(with_negatives: Path, tmp_path: Path) -> None:
    proc = run_cli("train", "--data", str(with_negatives), "--out", str(tmp_path / "run"), "--steps", "4",
                   "--batch-size", "4", "--image-size", "64", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "last.pt").is_file()
