"""BCNet-style bilayer Mask R-CNN (``--model bcnet``): occluder targets from amodal masks, the
contour targets, the bilayer head's losses and that inference pastes the occludee layer's mask."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

pytestmark = pytest.mark.torch

from blender_instseg.ml.data import InstanceDataset, collate, load_coco_source
from blender_instseg.ml.models import build_model
from blender_instseg.ml.models.bcnet import BCNet, BCNetConfig, mask_contour, occluder_masks
from blender_instseg.ml.train_config import AugmentConfig
from blender_instseg.ml.models.solov2 import PIXEL_MEAN, PIXEL_STD
from blender_instseg.ml.layers.masks import crop_masks_to_rois

SIZE = 64


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A (square, in front) hides the right part of B (wide box, behind); C lies behind B, touching it;
    D is alone. Returns visible and amodal masks (4, 64, 64) uint8 in the order A, B, C, D."""
    amodal = np.zeros((4, SIZE, SIZE), np.uint8)
    amodal[0, 10:30, 30:50] = 1  # A
    amodal[1, 14:26, 8:40] = 1   # B: columns 30..39 hidden by A
    amodal[2, 26:34, 8:20] = 1   # C: rows 26..33, touching B's bottom edge without overlapping it
    amodal[3, 44:60, 44:60] = 1  # D
    visible = amodal.copy()
    visible[1] &= 1 - amodal[0]
    return visible, amodal


def test_occluder_target_is_the_visible_mask_of_what_hides_the_object() -> None:
    visible, amodal = _scene()
    occ = occluder_masks(visible, amodal)
    np.testing.assert_array_equal(occ[1], visible[0])        # B is hidden by A: A's visible mask
    assert not occ[0].any() and not occ[2].any() and not occ[3].any()  # A is in front; C only touches B
    # inside B's RoI the occluder target is A's visible part within that region (12 x 12 box -> 1:1 crop)
    crop = crop_masks_to_rois(torch.from_numpy(occ), torch.tensor([[24.0, 14.0, 36.0, 26.0]]), torch.tensor([1]), 12)
    expected = np.zeros((12, 12), np.float32)
    expected[:, 6:] = 1  # A's columns 30.. of B's rows 14..25
    np.testing.assert_array_equal(crop[0].numpy(), expected)
    # a pixel of overlap is not an occlusion when min_overlap asks for more
    assert not occluder_masks(visible, amodal, min_overlap=10_000).any()


def test_contour_is_a_morphological_gradient_that_ignores_the_roi_edge() -> None:
    m = torch.zeros(1, 8, 8)
    m[0, 2:6, 0:5] = 1  # touches the left edge of the RoI
    c = mask_contour(m)[0]
    expected = torch.zeros(8, 8)
    expected[1:7, 0:6] = 1
    expected[3:5, 0:4] = 0  # interior (erosion) stays 0, including at the RoI's left edge
    torch.testing.assert_close(c, expected)


def _write_coco(root: Path) -> Path:
    visible, amodal = _scene()
    root.mkdir(parents=True)
    img = np.full((SIZE, SIZE, 3), 40, np.uint8)
    for k, colour in enumerate(((200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60))):
        img[visible[k] > 0] = colour
    cv2.imwrite(str(root / "img.png"), img[..., ::-1])

    def rle(m: np.ndarray) -> dict:
        r = mask_utils.encode(np.asfortranarray(m))
        return {"size": [SIZE, SIZE], "counts": r["counts"].decode()}

    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle(visible[k]),
             "area": int(visible[k].sum()), "bbox": [0, 0, 1, 1], "amodal_segmentation": rle(amodal[k])}
            for k in range(4)]
    coco = {"images": [{"id": 1, "file_name": "img.png", "width": SIZE, "height": SIZE}],
            "categories": [{"id": 1, "name": "thing"}], "annotations": anns}
    path = root / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


def test_dataset_delivers_amodal_and_occluder_masks(tmp_path: Path) -> None:
    src = load_coco_source(_write_coco(tmp_path / "ds"))
    cfg = BCNetConfig(num_classes=1)
    still = AugmentConfig(scale_min=1.0, scale_max=1.0, hflip=0.0, brightness=0, contrast=0, saturation=0)
    ds = InstanceDataset(src, src.category_ids, SIZE, seed=0, augment=still, make_targets=BCNet.make_targets(cfg),
                         amodal=BCNet.needs_amodal)
    _, t = ds[(0, 0)]
    visible, amodal = _scene()
    np.testing.assert_array_equal(t["amodal_masks"].numpy(), amodal)
    np.testing.assert_array_equal(t["occluder_masks"].numpy(), occluder_masks(visible, amodal))
    # augmented (scaled, cropped, flipped): the target follows the augmented masks
    moving = InstanceDataset(src, src.category_ids, SIZE, seed=1, make_targets=BCNet.make_targets(cfg), amodal=True)
    for epoch in range(3):
        _, t = moving[(0, epoch)]
        np.testing.assert_array_equal(t["occluder_masks"].numpy(),
                                      occluder_masks(t["masks"].numpy(), t["amodal_masks"].numpy()))


def test_bilayer_losses_train_both_layers_and_inference_uses_the_occludee_mask(tmp_path: Path) -> None:
    src = load_coco_source(_write_coco(tmp_path / "ds"))
    cfg = BCNetConfig(num_classes=1)
    ds = InstanceDataset(src, src.category_ids, SIZE, seed=0, make_targets=BCNet.make_targets(cfg), amodal=True)
    torch.manual_seed(0)
    model = build_model(cfg)
    images, targets = collate([ds[(0, e)] for e in range(2)])
    losses = model(images, targets)
    assert {"mask", "contour", "occluder_mask", "occluder_contour"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    (losses["occluder_mask"] + losses["occluder_contour"]).backward()
    head = model.mask_head
    assert head.occluder.mask.weight.grad is not None and head.occluder.mask.weight.grad.abs().sum() > 0
    assert head.occludee.mask.weight.grad is None  # the occluder loss does not reach the occludee predictor
    with pytest.raises(ValueError, match="occluder_masks"):
        model(images, [{k: v for k, v in t.items() if k != "occluder_masks"} for t in targets])
    model.eval()
    feats = model.fpn(model.backbone((images[:1] - PIXEL_MEAN) / PIXEL_STD)[1:])
    boxes = [torch.tensor([[8.0, 14.0, 40.0, 26.0], [30.0, 10.0, 50.0, 30.0]])]
    labels = torch.tensor([0, 0])
    probs = model._mask_probs(feats, boxes, labels)
    mask = model.mask_head(model._pool(feats, boxes, cfg.mask_pool))[0]
    torch.testing.assert_close(probs, torch.sigmoid(mask[:, 0]))
    assert probs.shape == (2, 2 * cfg.mask_pool, 2 * cfg.mask_pool)
