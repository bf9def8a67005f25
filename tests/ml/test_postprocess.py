"""SOLOv2's post-processing and batched predict give the predictions of the straightforward path.

``_reference_postprocess`` is a frozen copy of SOLOv2Lite.postprocess as it was before the fast path
(every (cell, class) row with its own copy of the maps, the classifier's two flip halves in one
pass, each kept mask upsampled to full-resolution floats, cropped, resized, thresholded). The
fast path must give the same detections in the same order: same labels, scores within 1e-5, and
masks equal or at IoU >= 0.99 (the upsampling sums are grouped differently, so a pixel whose logit
is within float rounding of 0 may differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blender_instseg.ml.checkpoint import load_model
from blender_instseg.ml.data import letterbox, list_images, read_image, to_tensor
from blender_instseg.ml.matrix_nms import matrix_nms
from blender_instseg.ml.models import ImplicitPointRendConfig, Solov2Config, build_model
from blender_instseg.ml.models.base import crop_and_resize_logits, empty_prediction, logits_to_masks
from blender_instseg.ml.predict import run_inference
from tests.ml.conftest import run_cli


# ---------------------------------------------------------------- the path before the fast one (frozen)
def _reference_classify(model, out, b, probs):  # type: ignore[no-untyped-def]
    cls = model.mask_cls
    if model.cfg.mask_cls_kind != "roi":
        return model.classify_masks(out, b, probs)
    crops = cls.crops(out["fine"][0][b], out["mask_feat"][b], probs)
    if not model.cfg.mask_cls_flip_tta:
        return cls.fc(cls.net(crops))
    log_p = F.log_softmax(cls.fc(cls.net(torch.cat([crops, crops.flip(-1)]))), dim=1)
    return 0.5 * (log_p[: len(crops)] + log_p[len(crops):])


def _reference_reclassify(model, out, b, cell, objectness, logits, probs, masks, area):  # type: ignore[no-untyped-def]
    cfg = model.cfg
    log_p = torch.log_softmax(_reference_classify(model, out, b, probs), dim=1)
    if cfg.mask_cls_grid_weight:
        grid = torch.sigmoid(out["cate"][b][cell]).clamp_min(1e-6)
        log_p = log_p + cfg.mask_cls_grid_weight * torch.log(grid)
    prob_cls = torch.softmax(log_p, dim=1)
    top_p, top_c = prob_cls.topk(min(cfg.mask_cls_topk, prob_cls.shape[1]), dim=1)
    scores = (objectness[:, None] * top_p).flatten()
    src = torch.arange(len(cell)).repeat_interleave(top_p.shape[1])
    keep = scores >= cfg.update_thr
    if not keep.any():
        return None
    src = src[keep]
    return cell[src], top_c.flatten()[keep], scores[keep], logits[src], probs[src], masks[src], area[src]


def _reference_select(model, out, b):  # type: ignore[no-untyped-def]
    cfg = model.cfg
    scores_all = torch.sigmoid(out["cate"][b])
    cell, label = torch.nonzero((scores_all > cfg.score_thr) & (scores_all >= cfg.update_thr), as_tuple=True)
    if len(cell) == 0:
        return None
    scores = scores_all[cell, label]
    if len(scores) > cfg.nms_pre:
        scores, order = scores.topk(cfg.nms_pre)
        cell, label = cell[order], label[order]
    if model.mask_cls is not None:
        cell = torch.unique(cell)
        scores, label = model.objectness(scores_all[cell]), torch.zeros_like(cell)  # (the rule, not the path)
    strides = torch.cat([torch.full((g * g,), s, dtype=torch.float32)
                         for g, s in zip(cfg.grids, cfg.level_strides)])[cell]
    logits = model.mask_logits(out, b, cell)
    probs = torch.sigmoid(logits)
    masks = probs > cfg.mask_thr
    area = masks.flatten(1).sum(1).float()
    keep = area > strides
    if not keep.any():
        return None
    cell, logits, probs, masks, area, scores, label = (cell[keep], logits[keep], probs[keep], masks[keep], area[keep],
                                                       scores[keep], label[keep])
    if model.mask_cls is not None:
        picked = _reference_reclassify(model, out, b, cell, scores, logits, probs, masks, area)
        if picked is None:
            return None
        cell, label, scores, logits, probs, masks, area = picked
    maskness = (probs * masks).flatten(1).sum(1) / area
    scores = scores * maskness
    keep = scores >= cfg.update_thr
    if not keep.any():
        return None
    cell, logits, masks, area, label, scores = cell[keep], logits[keep], masks[keep], area[keep], label[keep], scores[keep]
    scores, order = scores.sort(descending=True)
    cell, logits, masks, area, label = cell[order], logits[order], masks[order], area[order], label[order]
    scores = matrix_nms(masks, label, scores, mask_area=area, kernel=cfg.nms_kernel, sigma=cfg.nms_sigma)
    keep = scores >= cfg.update_thr
    if not keep.any():
        return None
    cell, logits, scores, label = cell[keep], logits[keep], scores[keep], label[keep]
    scores, order = scores.sort(descending=True)
    order = order[: cfg.max_per_img]
    return cell[order], label[order], scores[: cfg.max_per_img], logits[order]


@torch.no_grad()
def _reference_postprocess(model, out, b, valid_hw, out_hw, refine=None):  # type: ignore[no-untyped-def]
    picked = _reference_select(model, out, b)
    if picked is None:
        return empty_prediction(out_hw)
    cell, label, scores, logits = picked
    full = model.full_logits(out, b, cell, logits, refine)  # one full-resolution float map per row
    masks = crop_and_resize_logits(full, valid_hw, out_hw) > 0
    nonempty = masks.flatten(1).any(1)
    return {"masks": masks[nonempty], "labels": label[nonempty], "scores": scores[nonempty]}


# ---------------------------------------------------------------- comparisons
def _assert_same(ref: dict, new: dict) -> None:  # type: ignore[type-arg]
    assert len(ref["scores"]) == len(new["scores"])
    assert np.array_equal(np.asarray(ref["labels"]), np.asarray(new["labels"]))
    np.testing.assert_allclose(np.asarray(new["scores"]), np.asarray(ref["scores"]), rtol=0, atol=1e-5)
    a, b = np.asarray(ref["masks"], bool), np.asarray(new["masks"], bool)
    assert a.shape == b.shape
    if len(a):
        inter = (a & b).reshape(len(a), -1).sum(1)
        union = (a | b).reshape(len(a), -1).sum(1)
        assert (inter >= 0.99 * union).all(), (inter / np.maximum(union, 1)).min()


def test_logits_to_masks_is_upsample_crop_resize_threshold() -> None:
    """Every geometry predict meets: x4 from stride 4 (SOLOv2), x1 / x2 (point head, implicit query), the
    letterbox cut, no resize, a resize up (a large photo) and down (a thumbnail), empty masks."""
    gen = torch.Generator().manual_seed(0)
    cases = [((16, 16), 4, (64, 64), (64, 64)), ((16, 24), 4, (50, 96), (120, 230)), ((16, 24), 4, (50, 96), (25, 48)),
             ((64, 64), 1, (60, 64), (60, 64)), ((32, 32), 2, (64, 40), (256, 160))]
    for (h, w), factor, valid, out_hw in cases:
        logits = torch.randn(12, h, w, generator=gen) * 3 - 4
        logits[3] = -1.0  # no positive pixel
        logits[5] = -1.0
        logits[5, h // 2, w // 2] = 1e-3  # one barely positive pixel
        up = logits if factor == 1 else F.interpolate(logits[:, None], scale_factor=factor, mode="bilinear",
                                                      align_corners=False)[:, 0]
        ref = crop_and_resize_logits(up, valid, out_hw) > 0
        masks, nonempty = logits_to_masks(logits, factor, valid, out_hw)
        assert masks.shape == ref.shape and masks.dtype == torch.bool
        assert torch.equal(nonempty, ref.flatten(1).any(1))
        assert (masks != ref).sum() <= 1, (h, w, factor, valid, out_hw)  # at most a pixel at float rounding of 0
        assert not nonempty[3]


def _inputs(shapes_root: Path, image_size: int) -> list[tuple[np.ndarray, torch.Tensor, tuple[int, int]]]:
    """Drawn shapes as predict sees them: native, a non-square image (letterbox) and one larger than
    the input (the masks are resized up)."""
    imgs = [read_image(p) for p in list_images([shapes_root / "images"])[:2]]
    imgs += [cv2.resize(imgs[0], (72, 40)), cv2.resize(imgs[1], (90, 150))]
    out = []
    for img in imgs:
        padded, valid = letterbox(img, image_size)
        out.append((img, to_tensor(padded)[None], valid))
    return out


def _compare(model: torch.nn.Module, shapes_root: Path, refine: bool | None = None) -> int:
    kept = 0
    with torch.no_grad():
        for img, x, valid in _inputs(shapes_root, 64):
            out = model(x)
            ref = _reference_postprocess(model, out, 0, valid, img.shape[:2], refine)
            new = model.postprocess(out, 0, valid, img.shape[:2], refine=refine)
            _assert_same(ref, new)
            kept += len(new["scores"])
    return kept


def test_trained_solov2_gives_the_reference_predictions(trained_run: Path, shapes_root: Path) -> None:
    """The default model (RoI classifier with flip TTA) at threshold 0 (every candidate kept: the most
    to compare), with flip TTA off, and with another mask threshold (the crop boxes then come from
    the soft masks, not from the binary ones select has)."""
    model, _ = load_model(trained_run / "last.pt")
    assert model.cfg.mask_cls_flip_tta
    model.set_score_threshold(0.0)
    model.cfg.nms_pre = 100  # (fewer candidates to classify: a faster test)
    assert _compare(model, shapes_root) > 0
    model.cfg.mask_cls_flip_tta = False
    assert _compare(model, shapes_root) > 0
    model.cfg.mask_cls_flip_tta = True
    model.cfg.mask_thr = 0.4
    assert _compare(model, shapes_root) > 0


def test_bundled_one_class_weights_skip_the_classifier_with_the_same_predictions(shapes_root: Path) -> None:
    """The bundled class-agnostic weights (Predict View before any training): with one class the
    classifier's softmax is 1 whatever the crop, so its CNN is skipped and nothing changes."""
    from blender_instseg.ml.pretrained import bundled_path

    model, _ = load_model(bundled_path())
    assert model.cfg.num_classes == 1 and model.mask_cls is not None
    model.set_score_threshold(0.0)
    model.cfg.nms_pre = 100
    calls = []
    model.mask_cls.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        for img, x, valid in _inputs(shapes_root, 64):
            out = model(x)
            new = model.postprocess(out, 0, valid, img.shape[:2])
            assert not calls  # the fast path never ran the classifier
            _assert_same(_reference_postprocess(model, out, 0, valid, img.shape[:2]), new)
            assert len(new["scores"]) > 0


@pytest.mark.parametrize("overrides", [{"point_head": True}, {"mask_classifier": False},
                                       {"mask_cls_kind": "pooled"}], ids=["point-head", "no-classifier", "pooled"])
def test_solov2_variants_give_the_reference_predictions(shapes_root: Path, overrides: dict) -> None:  # type: ignore[type-arg]
    torch.manual_seed(0)
    model = build_model(Solov2Config(num_classes=3, **overrides)).eval()
    with torch.no_grad():
        model.head.cate_out.bias.fill_(0.0)  # untrained scores are ~0.01: lift them so there are detections
    model.set_score_threshold(0.0)
    model.cfg.nms_pre, model.cfg.max_per_img = 100, 20  # (the point head refines each kept mask: a faster test)
    assert _compare(model, shapes_root) > 0
    if overrides.get("point_head"):
        assert _compare(model, shapes_root, refine=False) > 0


def test_implicit_pointrend_gives_the_reference_predictions(shapes_root: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ImplicitPointRendConfig(num_classes=3)).eval()
    with torch.no_grad():
        model.head.cate_out.bias.fill_(0.0)
    model.set_score_threshold(0.0)
    model.cfg.nms_pre = 100
    assert _compare(model, shapes_root) > 0  # every pixel queried
    assert _compare(model, shapes_root, refine=False) > 0  # stride-4 logits x4


# ---------------------------------------------------------------- batched predict
@pytest.fixture(scope="module")
def mixed_folder(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven images in three sizes, in an order that breaks batches by size."""
    folder = tmp_path_factory.mktemp("mixed")
    imgs = [read_image(p) for p in list_images([shapes_root / "images"])]
    sizes = [(64, 64), (64, 64), (96, 48), (64, 64), (64, 64), (64, 64), (40, 72)]
    for i, (w, h) in enumerate(sizes):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.resize(imgs[i % len(imgs)], (w, h))[..., ::-1])
    return folder


def _by_image(results: list[dict]) -> dict[int, list[dict]]:  # type: ignore[type-arg]
    out: dict[int, list[dict]] = {}  # type: ignore[type-arg]
    for r in results:
        out.setdefault(r["image_id"], []).append(r)
    return out


def _assert_same_results(a: list[dict], b: list[dict]) -> None:  # type: ignore[type-arg]
    from pycocotools import mask as mask_utils

    ra, rb = _by_image(a), _by_image(b)
    assert ra.keys() == rb.keys()
    for iid in ra:
        assert [r["category_id"] for r in ra[iid]] == [r["category_id"] for r in rb[iid]]
        for x, y in zip(ra[iid], rb[iid]):
            assert abs(x["score"] - y["score"]) <= 2e-5
            if x["segmentation"] != y["segmentation"]:
                iou = mask_utils.iou([x["segmentation"]], [y["segmentation"]], [0])[0, 0]
                assert iou >= 0.99


def test_batched_inference_gives_the_single_image_predictions(trained_run: Path, mixed_folder: Path) -> None:
    model, ckpt = load_model(trained_run / "last.pt")
    model.set_score_threshold(0.0)
    model.cfg.nms_pre = 100
    items = [(i + 1, p) for i, p in enumerate(list_images([mixed_folder]))]
    cat_ids = [c["id"] for c in ckpt["categories"]]
    one, images_one = run_inference(model, items, cat_ids, 64, torch.device("cpu"), batch_size=1)
    assert len(one) > 0
    for batch_size, workers in ((3, 0), (8, 1)):
        got, images = run_inference(model, items, cat_ids, 64, torch.device("cpu"), batch_size=batch_size,
                                    workers=workers)
        assert images == images_one  # same order, sizes and ids
        _assert_same_results(one, got)


def test_predict_cli_batches_with_workers(trained_run: Path, mixed_folder: Path, tmp_path: Path) -> None:
    """The flags reach run_inference: --batch-size 4 --workers 1 writes what --batch-size 1 writes."""
    outs = []
    for flags in (["--batch-size", "1"], ["--batch-size", "4", "--workers", "1"]):
        out = tmp_path / f"p{len(outs)}.json"
        proc = run_cli("predict", "--checkpoint", str(trained_run / "last.pt"), "--images", str(mixed_folder),
                       "--out", str(out), "--score-threshold", "0", *flags)
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(out.read_text()))
    _assert_same_results(outs[0], outs[1])
