"""The model zoo: every registered architecture learns, round-trips through a checkpoint and predicts
COCO results, under the same CLI (``--model NAME``); old SOLOv2 checkpoints still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

pytestmark = pytest.mark.torch

from blender_instseg.ml.checkpoint import load_model, save_checkpoint
from blender_instseg.ml.data import InstanceDataset, collate, load_coco_source, mask_boxes_xyxy, read_image
from blender_instseg.ml.models import ARCHITECTURES, build_model, config_from_dict
from blender_instseg.ml.predict import apply_score_threshold, predict_image, to_coco_results
from blender_instseg.ml.train import parse_overrides
from tests.ml.conftest import events, run_cli

ARCHS = list(ARCHITECTURES)

#: the loss parts each architecture's training forward returns; train reports each as ``loss_<part>``
LOSS_PARTS = {
    "solov2": {"cate", "mask", "mask_cls"},
    "yolact": {"box", "cls", "mask"},
    "maskrcnn": {"box", "cls", "mask", "rpn_box", "rpn_cls"},
    "polarmask": {"centerness", "cls", "mask"},
    "bcnet": {"box", "cls", "contour", "mask", "occluder_contour", "occluder_mask", "rpn_box", "rpn_cls"},
    "implicit_pointrend": {"cate", "mask", "params"},
}


def test_every_architecture_has_its_loss_parts_listed() -> None:
    assert set(LOSS_PARTS) == set(ARCHS)


def _model_and_batch(arch: str, shapes_root: Path, n: int = 4):
    cfg_cls, model_cls = ARCHITECTURES[arch]
    cfg = cfg_cls(num_classes=3)
    src = load_coco_source(shapes_root / "annotations.json")
    ds = InstanceDataset(src, src.category_ids, 64, seed=0, make_targets=model_cls.make_targets(cfg),
                         amodal=model_cls.needs_amodal)
    torch.manual_seed(0)
    return build_model(cfg), collate([ds[(i, 0)] for i in range(n)])


@pytest.mark.parametrize("arch", ARCHS)
def test_every_model_lowers_its_loss_in_a_few_steps(arch: str, shapes_root: Path) -> None:
    model, (images, targets) = _model_and_batch(arch, shapes_root)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        parts = model(images, targets)
        assert parts and all(v.ndim == 0 for v in parts.values())
        loss = sum(parts.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("arch", ARCHS)
def test_every_model_round_trips_save_load_predict(arch: str, shapes_root: Path, tmp_path: Path) -> None:
    model, (images, targets) = _model_and_batch(arch, shapes_root)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(5):  # move off the initialisation so the outputs are not trivially equal
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    apply_score_threshold(model, 0.0)  # an untrained model is unsure: keep every candidate
    img = read_image(shapes_root / "images" / "000000.png")
    before = predict_image(model, img, 64, torch.device("cpu"))
    assert len(before["masks"]) > 0
    assert before["masks"].shape[1:] == img.shape[:2] and before["masks"].dtype == bool
    assert (np.diff(before["scores"]) <= 0).all() and ((before["labels"] >= 0) & (before["labels"] < 3)).all()
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": model.cfg.to_dict(),
                           "categories": [{"id": i, "name": str(i)} for i in (1, 2, 3)]})
    raw = torch.load(path, weights_only=True)
    assert raw["model_config"]["arch"] == arch
    loaded, _ = load_model(path)
    assert type(loaded) is type(model)
    after = predict_image(loaded, img, 64, torch.device("cpu"))
    for key in ("masks", "labels", "scores"):
        np.testing.assert_array_equal(before[key], after[key])
    results = to_coco_results(1, after, [1, 2, 3])
    assert results == to_coco_results(1, before, [1, 2, 3])
    for r, m in zip(results, after["masks"]):
        decoded = mask_utils.decode({"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), m)


@pytest.mark.parametrize("arch", ARCHS)
def test_train_model_name_in_the_cli_and_predict_takes_it_from_the_checkpoint(arch: str, shapes_root: Path,
                                                                             tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run_dir), "--steps", "2", "--batch-size", "2",
                   "--image-size", "64", "--checkpoint-every", "0", "--model", arch)
    assert proc.returncode == 0, proc.stderr
    progress = [e for e in events(proc.stdout) if e.event == "progress"]
    assert [e.get("step") for e in progress] == [1, 2]
    for ev in progress:  # every part of this model's loss, each a finite number, adding up to the total
        # loss_avg is the running average of the total, not a part
        parts = {k[len("loss_"):]: v for k, v in ev.data.items() if k.startswith("loss_") and k != "loss_avg"}
        assert set(parts) == LOSS_PARTS[arch], sorted(parts)
        assert all(isinstance(v, float) and np.isfinite(v) for v in parts.values()), parts
        assert sum(parts.values()) == pytest.approx(ev.get("loss"), rel=1e-4, abs=1e-5)
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["model_config"]["arch"] == arch
    assert json.loads((run_dir / "config.json").read_text())["model_config"]["arch"] == arch
    out = tmp_path / "preds.json"
    proc = run_cli("predict", "--checkpoint", str(run_dir), "--images", str(shapes_root / "annotations.json"),
                   "--out", str(out), "--score-threshold", "0")
    assert proc.returncode == 0, proc.stderr
    from pycocotools.coco import COCO

    gt = COCO(str(shapes_root / "annotations.json"))
    preds = json.loads(out.read_text())
    assert preds, "score threshold 0 keeps every candidate, so a 2-step model still predicts"
    assert {p["image_id"] for p in preds} <= set(gt.getImgIds())
    assert {p["category_id"] for p in preds} <= set(gt.getCatIds())
    assert all(0.0 <= p["score"] <= 1.0 for p in preds)
    dt = gt.loadRes(preds)  # decodes and indexes every RLE
    assert len(dt.getAnnIds()) == len(preds)
    for p in preds:
        m = mask_utils.decode(p["segmentation"])
        assert m.shape == (64, 64) and m.any()
        np.testing.assert_allclose(mask_utils.toBbox(p["segmentation"]), p["bbox"], atol=0.01)


def test_old_solov2_checkpoints_without_arch_still_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model({"num_classes": 2})
    cfg = model.cfg.to_dict()
    cfg.pop("arch")
    old = tmp_path / "old.pt"
    torch.save({"format": "blender_instseg.solov2-lite/1", "model": model.state_dict(), "model_config": cfg,
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, old)
    loaded, ckpt = load_model(old)
    assert loaded.cfg.arch == "solov2" and loaded.cfg == model.cfg
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)


def test_unknown_model_name_is_a_one_line_error(shapes_root: Path, tmp_path: Path) -> None:
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "r"), "--steps", "1", "--model", "nope")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'nope'" in lines[0] and "solov2" in lines[0]
    old_style = run_cli("train", "--data", str(shapes_root), "--out", str(tmp_path / "r"), "--model", "fpn_channels=32")
    assert old_style.returncode == 2 and "--model-config" in old_style.stderr
    with pytest.raises(ValueError, match="unknown model"):
        config_from_dict({"arch": "nope", "num_classes": 1})


def test_models_command_lists_every_architecture() -> None:
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["name"] for r in rows] == ARCHS and all(r["summary"] for r in rows)
    listed = run_cli("train", "--model", "list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in ARCHS)


def test_model_config_overrides_keep_lists_whole() -> None:
    cls = ARCHITECTURES["solov2"][0]
    out = parse_overrides("grids=[40,24,12],fpn_channels=96,scale_ranges=[[0,0.3],[0.1,0.6],[0.3,100]]", cls)
    assert out["grids"] == (40, 24, 12) and out["fpn_channels"] == 96
    assert out["scale_ranges"] == ((0.0, 0.3), (0.1, 0.6), (0.3, 100.0))
    with pytest.raises(ValueError, match="fixed setting"):
        parse_overrides("num_classes=4", cls)


def test_point_head_flag_is_solov2s_and_off_unless_asked_for() -> None:
    """Without --point-head/--no-point-head a run gets its architecture's default (solov2: no head,
    measured better per CPU minute); naming either for a model without the head is an error."""
    import argparse

    from blender_instseg.ml import cli_args
    from blender_instseg.ml.train import new_model_config

    p = argparse.ArgumentParser()
    cli_args.train(p)
    base = ["--data", "D", "--out", "O"]
    assert [p.parse_args(base + extra).point_head for extra in ([], ["--point-head"], ["--no-point-head"])] == \
        [None, True, False]
    assert new_model_config("solov2", 3, {}, None).point_head is False
    assert new_model_config("solov2", 3, {"point_head": True}, None).point_head is True
    assert new_model_config("yolact", 3, {}, None).num_classes == 3
    for flag, value in (("--point-head", True), ("--no-point-head", False)):
        with pytest.raises(ValueError, match=f"{flag} applies to solov2 only"):
            new_model_config("yolact", 3, {"point_head": value}, None)
    # a saved config always names point_head; one without it is from when the head was the default
    assert config_from_dict({"arch": "solov2", "num_classes": 3}).point_head is True


def test_score_threshold_does_not_ratchet() -> None:
    model = build_model({"num_classes": 2})
    apply_score_threshold(model, 0.02)
    apply_score_threshold(model, 0.5)
    assert model.cfg.score_thr == pytest.approx(0.1) and model.cfg.update_thr == 0.5
    apply_score_threshold(model, 0.0)
    assert model.cfg.score_thr == 0.0 and model.cfg.update_thr == 0.0


def test_generic_targets_hold_tight_boxes_and_amodal_masks(shapes_root: Path) -> None:
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 2:5, 3:7] = 1
    np.testing.assert_array_equal(mask_boxes_xyxy(masks), [[3, 2, 7, 5], [0, 0, 0, 0]])
    src = load_coco_source(shapes_root / "annotations.json")
    ds = InstanceDataset(src, src.category_ids, 64, seed=0, amodal=True)
    _, t = ds[(0, 0)]
    assert set(t) == {"labels", "masks", "boxes", "amodal_masks"}
    # the shapes set has no amodal_segmentation: the visible mask stands in for it
    torch.testing.assert_close(t["amodal_masks"], t["masks"])
    torch.testing.assert_close(t["boxes"], torch.from_numpy(mask_boxes_xyxy(t["masks"].numpy())))
    # an amodal mask (here: the visible one grown by a 9x9 dilation) goes through the same crop and flips
    import cv2

    rec = src.records[0]
    h, w = rec.height, rec.width
    for a in rec.anns:
        vis = mask_utils.decode(a["segmentation"]) if isinstance(a["segmentation"], dict) else None
        assert vis is not None
        grown = cv2.dilate(vis, np.ones((9, 9), np.uint8))
        rle = mask_utils.encode(np.asfortranarray(grown))
        a["amodal_segmentation"] = {"size": [h, w], "counts": rle["counts"].decode()}
    for epoch in range(3):
        _, t = ds[(0, epoch)]
        vis, amodal = t["masks"].bool(), t["amodal_masks"].bool()
        assert len(vis) and (amodal | vis).equal(amodal)           # amodal covers the visible part
        assert (amodal.flatten(1).sum(1) > vis.flatten(1).sum(1)).all()  # and is larger
