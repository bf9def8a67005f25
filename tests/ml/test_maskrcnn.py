"""Mask R-CNN specifics (the zoo tests cover learning, save/load/predict and the CLI for every model):
anchor labelling, empty images, letterbox-aware mask pasting, one image learnt end to end, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.torch

from blender_instseg.ml.data import InstanceDataset, collate, load_coco_source
from blender_instseg.ml.models import build_model
from blender_instseg.ml.models.maskrcnn import MaskRCNN, MaskRCNNConfig, match_anchors
from tests.ml.conftest import fit_one_image_best_iou, run_cli


def test_match_anchors_thresholds_and_low_quality_matches() -> None:
    anchors = torch.tensor([[0.0, 0, 10, 10],     # IoU 1 with GT 0 -> positive
                            [0, 0, 10, 12],       # IoU 10/12 = .83 -> positive
                            [0, 0, 10, 20],       # IoU .5 -> ignored
                            [50, 50, 60, 60],     # IoU 0 -> negative
                            [30, 30, 50, 50]])    # best anchor of the small GT 1 (IoU .04): low-quality positive
    gt = torch.tensor([[0.0, 0, 10, 10], [35, 35, 39, 39]])
    labels, matched = match_anchors(gt, anchors, 0.7, 0.3)
    assert labels.tolist() == [1, 1, -1, 0, 1]
    assert matched[[0, 1, 4]].tolist() == [0, 0, 1]
    labels, _ = match_anchors(gt[:0], anchors, 0.7, 0.3)
    assert labels.tolist() == [0] * 5


def test_an_image_without_objects_trains_without_nan() -> None:
    torch.manual_seed(0)
    model = MaskRCNN(MaskRCNNConfig(num_classes=2)).train()
    images = torch.rand(2, 3, 64, 64)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "masks": torch.zeros(0, 64, 64, dtype=torch.uint8)}
    one = {"boxes": torch.tensor([[10.0, 12, 30, 40]]), "labels": torch.tensor([1]),
           "masks": torch.zeros(1, 64, 64, dtype=torch.uint8)}
    one["masks"][0, 12:40, 10:30] = 1
    for targets in ([empty, empty], [empty, one]):
        losses = model(images, targets)
        assert set(losses) == {"rpn_cls", "rpn_box", "cls", "box", "mask"}
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
    assert model(images, [empty, empty])["mask"].item() == 0.0


def test_postprocess_pastes_masks_into_the_original_image_through_the_letterbox() -> None:
    model = build_model({"arch": "maskrcnn", "num_classes": 2})
    # a 64x128 (h, w) image letterboxed to 32x64 inside a 64x64 input: boxes are in input pixels
    out = {"boxes": [torch.tensor([[8.0, 8, 24, 16], [40, 2, 60, 30]])], "scores": [torch.tensor([0.9, 0.8])],
           "labels": [torch.tensor([1, 0])], "mask_probs": [torch.stack([torch.ones(28, 28), torch.zeros(28, 28)])]}
    res = model.postprocess(out, 0, (32, 64), (64, 128))
    assert res["masks"].shape == (1, 64, 128) and res["masks"].dtype == torch.bool  # the all-zero mask is dropped
    want = torch.zeros(64, 128, dtype=torch.bool)
    want[16:32, 16:48] = True
    assert torch.equal(res["masks"][0], want)
    assert res["labels"].tolist() == [1] and res["scores"].tolist() == pytest.approx([0.9])
    empty = {"boxes": [torch.zeros(0, 4)], "scores": [torch.zeros(0)], "labels": [torch.zeros(0, dtype=torch.long)],
             "mask_probs": [torch.zeros(0, 28, 28)]}
    assert model.postprocess(empty, 0, (32, 64), (64, 128))["masks"].shape == (0, 64, 128)


def test_learns_one_image_end_to_end(shapes_root: Path) -> None:
    """60 steps on one image with 4 objects of 3 classes: every object comes back with its class and
    mask IoU > 0.5 -- anchors, deltas, RoIAlign, crops and pasting must agree for that."""
    src = load_coco_source(shapes_root / "annotations.json")
    images, targets = collate([InstanceDataset(src, src.category_ids, 64, seed=0)[(7, 0)]])
    gt = targets[0]["masks"].bool()
    assert len(gt) == 4 and len(set(targets[0]["labels"].tolist())) == 3
    torch.manual_seed(0)
    small = {"backbone_widths": (16, 32, 48, 64, 96), "box_fc": 128, "mask_channels": 32, "roi_batch_per_image": 64}
    model = MaskRCNN(MaskRCNNConfig(num_classes=3, **small))  # type: ignore[arg-type]
    best = fit_one_image_best_iou(model, images, targets, steps=60)
    assert (best > 0.5).all(), best


def test_resume_repeats_the_same_rpn_and_roi_samples(shapes_root: Path, tmp_path: Path) -> None:
    """Anchor and RoI sampling draw from the global torch RNG, which checkpoints carry: 2 + 2 resumed
    steps give the weights of 4 straight ones."""
    common = ["--data", str(shapes_root), "--batch-size", "2", "--image-size", "64", "--checkpoint-every", "0",
              "--model", "maskrcnn"]
    straight = run_cli("train", *common, "--out", str(tmp_path / "a"), "--steps", "4")
    assert straight.returncode == 0, straight.stderr
    first = run_cli("train", *common, "--out", str(tmp_path / "b"), "--steps", "2")
    assert first.returncode == 0, first.stderr
    resumed = run_cli("train", *common[:-2], "--out", str(tmp_path / "b"), "--steps", "4", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4 and b["model_config"]["arch"] == "maskrcnn"
    for k, v in a["model"].items():
        torch.testing.assert_close(v, b["model"][k], rtol=1e-5, atol=1e-6, msg=f"weights differ after resume: {k}")
