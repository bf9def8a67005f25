"""The network pieces, in process: target assignment, Matrix NMS, point head, learning, save -> load -> predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.torch

from blender_instseg.ml.checkpoint import load_checkpoint, load_model, save_checkpoint
from blender_instseg.ml.data import TrainDataset, collate, load_coco_source
from blender_instseg.ml.device import autocast
from blender_instseg.ml.matrix_nms import matrix_nms
from blender_instseg.ml.models import Solov2Config, build_model
from blender_instseg.ml.models.point_head import PointHead
from blender_instseg.ml.predict import predict_image, to_coco_results
from blender_instseg.ml.data import read_image
from blender_instseg.ml.targets import assign_cells


def test_assign_cells_puts_an_object_in_its_centre_cell_on_the_right_level() -> None:
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 4:10, 40:46] = 1      # small (6 px of 64): finest grid only
    masks[1, 10:60, 2:52] = 1      # large (50 px): coarse grids
    grids, ranges = (8, 4, 2), ((0.0, 0.25), (0.125, 0.5), (0.25, 100.0))
    cells, inst = assign_cells(masks, grids, ranges, 0.2)
    small = cells[inst == 0]
    assert len(small) >= 1 and (small < 64).all()
    # centre of mass (y 7, x 43) -> row 0, column 5 of the 8x8 grid
    assert 0 * 8 + 5 in small.tolist()
    large = cells[inst == 1]
    assert len(large) >= 1 and (large >= 64).all()


def test_matrix_nms_decays_duplicates_of_the_same_class_only() -> None:
    m = torch.zeros(3, 16, 16, dtype=torch.bool)
    m[0, 2:10, 2:10] = True
    m[1, 2:10, 2:10] = True        # duplicate of 0
    m[2, 2:10, 2:10] = True        # same pixels, other class
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    out = matrix_nms(m, labels, scores)
    assert out[0] == pytest.approx(0.9)
    assert out[1] < 0.8 * 0.2           # exp(-2) decay for IoU 1
    assert out[2] == pytest.approx(0.7)


def test_point_head_starts_as_bilinear_upsampling_and_refines_to_full_resolution() -> None:
    torch.manual_seed(0)
    head = PointHead(fine_channels=5)
    coarse = torch.randn(3, 8, 8)
    fine = [torch.randn(1, 5, 32, 32)]
    refined = head.refine(fine, coarse, steps=2, num_points=20)
    assert refined.shape == (3, 32, 32)
    up = torch.nn.functional.interpolate(torch.nn.functional.interpolate(coarse[:, None], scale_factor=2, mode="bilinear",
                                                                         align_corners=False), scale_factor=2, mode="bilinear",
                                         align_corners=False)[:, 0]
    assert torch.allclose(refined, up, atol=1e-5)  # zero-initialised residual


def _batch(shapes_root: Path, cfg: Solov2Config, n: int = 4):
    src = load_coco_source(shapes_root / "annotations.json")
    ds = TrainDataset(src, src.category_ids, 64, cfg.grids, cfg.scale_ranges, cfg.sigma, seed=0)
    return collate([ds[(i, 0)] for i in range(n)])


@pytest.mark.parametrize("point_head,precision", [(True, "fp32"), (False, "fp32"), (True, "bf16")])
def test_a_few_training_steps_lower_the_loss(shapes_root: Path, point_head: bool, precision: str) -> None:
    """bf16 as ``train --precision bf16`` runs it: autocast forward, fp32 losses, weights and gradients."""
    torch.manual_seed(0)
    cfg = Solov2Config(num_classes=3, point_head=point_head)
    model = build_model(cfg).train()
    images, targets = _batch(shapes_root, cfg)
    assert sum(len(t["cell_index"]) for t in targets) > 0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        with autocast(precision, torch.device("cpu")):
            loss = sum(v.float() for v in model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in model.parameters() if p.grad is not None)


def test_bf16_runs_the_network_in_bf16_with_losses_close_to_fp32(shapes_root: Path) -> None:
    torch.manual_seed(0)
    cfg = Solov2Config(num_classes=3, point_head=True)
    model = build_model(cfg).train()
    images, targets = _batch(shapes_root, cfg)
    torch.manual_seed(1)
    ref = model(images, targets)
    torch.manual_seed(1)  # the same random picks (classifier cells, training points)
    with autocast("bf16", torch.device("cpu")):
        out = model.features(images)
        low = model.loss(out, targets)
    assert out["mask_feat"].dtype == torch.bfloat16 and out["cate"].dtype == torch.bfloat16
    assert set(low) == set(ref)
    for k, v in low.items():
        assert v.dtype == torch.float32, k
        a, b = float(v.detach()), float(ref[k].detach())
        assert abs(a - b) <= 0.05 * abs(b) + 1e-3, (k, a, b)


def test_save_load_predict_gives_identical_outputs(trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    model, ckpt = load_model(trained_run / "last.pt")
    model.cfg.score_thr = 0.0   # a 12-step model is unsure: keep every candidate so there is much to compare
    model.cfg.update_thr = 0.0
    img = read_image(shapes_root / "images" / "000000.png")
    before = predict_image(model, img, 64, torch.device("cpu"))
    assert len(before["masks"]) > 0
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": model.cfg.to_dict(),
                           "categories": ckpt["categories"]})
    raw = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert raw["model_config"]["score_thr"] == 0.0
    loaded, _ = load_model(path)
    after = predict_image(loaded, img, 64, torch.device("cpu"))
    for key in ("masks", "labels", "scores"):
        np.testing.assert_array_equal(before[key], after[key])
    assert to_coco_results(1, before, [1, 2, 3]) == to_coco_results(1, after, [1, 2, 3])


def test_checkpoint_loader_rejects_foreign_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="is not a checkpoint of this project"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="is not a checkpoint of this project"):
        load_checkpoint(other)


def test_training_points_are_drawn_around_each_instance() -> None:
    from blender_instseg.ml.models.point_head import mask_boxes, uncertain_points_with_randomness

    masks = torch.zeros(2, 64, 64)
    masks[0, 10:20, 30:50] = 1
    masks[1, 60:64, 0:2] = 1   # small, at the border
    boxes = mask_boxes(masks)
    torch.testing.assert_close(boxes[0] * 64, torch.tensor([25.0, 7.0, 55.0, 23.0]))
    assert (boxes >= 0).all() and (boxes <= 1).all()
    # seeded: with random coarse logits the uncertain points cluster, and 50 points missed the small
    # object for 19 % of seeds (196, the training default, for 2 % of them)
    torch.manual_seed(0)
    coarse = torch.randn(2, 1, 16, 16)
    pts = uncertain_points_with_randomness(coarse, 196, 3.0, 0.75, boxes=boxes)
    assert pts.shape == (2, 196, 2)
    assert (pts >= boxes[:, None, :2]).all() and (pts <= boxes[:, None, 2:]).all()
    inside = (pts[1, :, 0] < 2 / 64 + 1e-6) & (pts[1, :, 1] > 60 / 64)
    assert inside.any()  # the small object is actually sampled


def test_mask_pooled_classifier_averages_each_map_under_the_mask() -> None:
    from blender_instseg.ml.models.mask_classifiers import MaskPooledClassifier

    clf = MaskPooledClassifier((1, 1), hidden=4, num_classes=2)
    fine = torch.zeros(1, 8, 8)
    fine[0, :4] = 2.0          # top half 2, bottom half 0
    coarse = torch.full((1, 4, 4), 5.0)
    weights = torch.zeros(2, 8, 8)
    weights[0, :4] = 1.0       # the top half
    weights[1, 6:, 6:] = 0.5   # a soft corner of the bottom half
    seen = {}
    clf.net.register_forward_pre_hook(lambda _m, inp: seen.setdefault("x", inp[0]))
    assert clf([fine, coarse], weights).shape == (2, 2)
    torch.testing.assert_close(seen["x"], torch.tensor([[2.0, 5.0], [0.0, 5.0]]))


def test_square_crops_centre_a_square_on_each_mask_in_normalised_coordinates() -> None:
    from blender_instseg.ml.layers.object_crops import square_crops

    w = torch.zeros(3, 64, 64)
    w[0, 10:20, 30:50] = 1.0   # box x 30..50, y 10..20: centre (40, 15), longer side 20
    w[1, 5:9, 5:9] = 0.3       # faint: its pixels above half its own peak
    theta = square_crops(w, margin=0.2)
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])  # output (x, y) corners, homogeneous
    px = ((theta @ corners.T).transpose(1, 2) + 1) / 2 * 64       # -> input pixel edges
    torch.testing.assert_close(px[0], torch.tensor([[28.0, 3.0], [52.0, 27.0]]))
    torch.testing.assert_close(px[1], torch.tensor([[4.6, 4.6], [9.4, 9.4]]))
    torch.testing.assert_close(px[2], torch.tensor([[-6.4, -6.4], [70.4, 70.4]]))  # empty: the whole map
    # the same matrices crop the stride-1 version of the map alike: the crop is resolution-free
    up = torch.nn.functional.interpolate(w[:1, None], scale_factor=4)[0]
    grid = torch.nn.functional.affine_grid(theta[:1], [1, 1, 24, 24], align_corners=False)
    a = torch.nn.functional.grid_sample(w[None, :1], grid, align_corners=False)
    b = torch.nn.functional.grid_sample(up[None], grid, align_corners=False)
    assert (a - b).abs().mean() < 0.05 and a.sum() > 100


def test_roi_classifier_training_views_start_with_the_plain_crop() -> None:
    from blender_instseg.ml.models.mask_classifiers import RoIMaskClassifier

    torch.manual_seed(0)
    clf = RoIMaskClassifier(feat_channels=4, hidden=8, num_classes=3).eval()
    image, feat = torch.randn(3, 64, 64), torch.randn(4, 16, 16)
    weights = torch.zeros(2, 16, 16)
    weights[0, 2:6, 3:9] = 1.0
    weights[1, 8:15, 8:12] = 1.0
    plain = clf(image, feat, weights)
    views = clf(image, feat, weights, views=3, jitter=0.2, generator=torch.Generator().manual_seed(0))
    assert plain.shape == (2, 3) and views.shape == (6, 3)
    torch.testing.assert_close(views[:2], plain)
    assert not torch.allclose(views[2:4], plain) and not torch.allclose(views[4:], views[2:4])


def test_classifier_trains_on_predicted_masks_only_where_they_overlap_their_object(shapes_root: Path) -> None:
    """mask_cls_max_cells adds predicted masks of positive cells to the classifier's GT masks, minus
    those whose stride-4 mask overlaps its object by less than mask_cls_min_iou."""
    from blender_instseg.ml.models.solov2 import mask_iou_pairs

    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2], b[0, :1] = True, True  # 4 of 8 pixels
    a[1, 0, 0] = True                # disjoint from an empty mask
    torch.testing.assert_close(mask_iou_pairs(a, b), torch.tensor([0.5, 0.0, 0.0]))

    torch.manual_seed(0)
    counts = {}
    for min_iou in (0.0, 1.01):
        cfg = Solov2Config(num_classes=3, mask_cls_max_cells=4, mask_cls_views=1, mask_cls_min_iou=min_iou)
        model = build_model(cfg).train()
        images, targets = _batch(shapes_root, cfg)
        seen: list[int] = []
        crops = model.mask_cls.crops  # the masks each image sends to the classifier (then one batched pass)

        def counted(image: torch.Tensor, feat: torch.Tensor, weights: torch.Tensor, *args: object) -> torch.Tensor:
            seen.append(len(weights))
            return crops(image, feat, weights, *args)

        model.mask_cls.crops = counted
        assert torch.isfinite(model(images, targets)["mask_cls"])
        gt = [len(t["labels"]) for t in targets if len(t["cell_index"])]
        cells = [min(4, len(t["cell_index"])) for t in targets if len(t["cell_index"])]
        counts[min_iou] = (seen, gt, cells)
    seen, gt, cells = counts[0.0]
    assert seen == [g + c for g, c in zip(gt, cells)]  # every picked prediction kept
    seen, gt, _ = counts[1.01]
    assert seen == gt                                  # none can reach IoU 1.01


def test_shuffle_channels_gives_each_crop_a_permutation_of_its_colours() -> None:
    from blender_instseg.ml.layers.object_crops import shuffle_channels

    rgb = torch.rand(64, 3, 5, 5)
    out = shuffle_channels(rgb, torch.Generator().manual_seed(0))
    orders = set()
    for a, b in zip(rgb, out):
        order = tuple(next(i for i in range(3) if torch.equal(b[c], a[i])) for c in range(3))
        assert sorted(order) == [0, 1, 2]
        orders.add(order)
    assert len(orders) == 6  # 64 crops draw every order, the identity among them
    torch.testing.assert_close(shuffle_channels(rgb, torch.Generator().manual_seed(0)), out)
    assert shuffle_channels(rgb[:0]).shape == (0, 3, 5, 5)


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("one_pass", [True, False])
def test_roi_classifier_flip_tta_is_the_mean_of_the_crop_and_its_mirror(stages: int, one_pass: bool,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Mirroring image and masks mirrors each crop, so the TTA logits are the mean log-probabilities
    of the plain and the mirrored input, whether crops and mirror images run as one batch or two."""
    from blender_instseg.ml.models import mask_classifiers
    from blender_instseg.ml.models.mask_classifiers import RoIMaskClassifier

    monkeypatch.setattr(mask_classifiers, "_ONE_PASS_BYTES", 1 << 30 if one_pass else 0)
    torch.manual_seed(0)
    clf = RoIMaskClassifier(feat_channels=4, hidden=8, num_classes=3, stages=stages).eval()
    image, feat = torch.randn(3, 64, 64), torch.randn(4, 16, 16)
    weights = torch.zeros(2, 16, 16)
    weights[0, 2:6, 3:9] = 1.0
    weights[1, 8:15, 8:12] = 0.8
    with torch.no_grad():
        tta = clf(image, feat, weights, flip_tta=True)
        plain = torch.log_softmax(clf(image, feat, weights), 1)
        mirrored = torch.log_softmax(clf(image.flip(-1), feat.flip(-1), weights.flip(-1)), 1)
    assert tta.shape == (2, 3)
    torch.testing.assert_close(tta, 0.5 * (plain + mirrored), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(plain, mirrored)


def test_crop_bank_cuts_objects_as_the_classifier_crops_them(shapes_root: Path) -> None:
    """The data set's bank crops (raw image) and the model's crops of the same GT mask (normalised
    image) agree once normalised, and each carries its object's label; drawing is resumable."""
    from blender_instseg.ml.data import InstanceDataset, decode_to_size
    from blender_instseg.ml.models.solov2 import PIXEL_MEAN, PIXEL_STD
    from blender_instseg.ml.layers.object_crops import sample_crops, square_crops

    src = load_coco_source(shapes_root / "annotations.json")
    ds = InstanceDataset(src, src.category_ids, 64, seed=0, crop_bank=(6, 24))
    _, t = ds[(0, 0)]
    crops, labels = t["object_crops"], t["object_crop_labels"]
    assert crops.shape == (6, 4, 24, 24) and labels.shape == (6,) and crops[:, 3].amax() > 0.9
    _, again = InstanceDataset(src, src.category_ids, 64, seed=0, crop_bank=(6, 24))[(0, 0)]
    torch.testing.assert_close(again["object_crops"], crops)
    cached = {p: c.float() / 255 for p, c in ds.bank_cache.items()}
    for crop, label in zip(crops, labels.tolist()):
        p = next(p for p, c in cached.items() if torch.equal(c, crop) or torch.equal(c.flip(-1), crop))
        i, j = ds.bank_index[p]
        ann = src.records[i].anns[j]
        assert src.category_ids[label] == ann["category_id"]
        img = torch.from_numpy(read_image(src.records[i].path).transpose(2, 0, 1).copy()).float() / 255
        mask = torch.from_numpy(decode_to_size(ann["segmentation"], *img.shape[1:])).float()
        soft = torch.nn.functional.avg_pool2d(mask[None, None], 4)[0]
        mine = sample_crops((img - PIXEL_MEAN) / PIXEL_STD, soft, square_crops(soft), 24)[0]
        bank = cached[p].clone()
        bank[:3] = (bank[:3] - PIXEL_MEAN) / PIXEL_STD
        assert (mine - bank).abs().max() < 1 / 255 / PIXEL_STD  # equal but for the uint8 storage


def test_old_configs_load_with_the_classifier_they_were_trained_with() -> None:
    assert Solov2Config.from_dict({"num_classes": 2}).mask_classifier is False
    # saved before channel shuffling and flip TTA: resumed and predicted as they were trained
    old = Solov2Config.from_dict({"num_classes": 2, "mask_classifier": True, "mask_cls_kind": "roi"})
    assert old.mask_cls_permute is False and old.mask_cls_flip_tta is False and old.mask_cls_stages == 2
    assert Solov2Config(num_classes=2).mask_cls_permute and Solov2Config(num_classes=2).mask_cls_flip_tta
    # saved before the mask features read the stride-2 map: the same network (its weights load)
    assert old.mask_fine is False and Solov2Config(num_classes=2).mask_fine
    build_model(old).load_state_dict(build_model(Solov2Config(num_classes=2, point_head=True, mask_fine=False,
                                                       mask_cls_stages=2)).state_dict())
    old = Solov2Config.from_dict({"num_classes": 2, "mask_classifier": True})
    assert old.mask_cls_kind == "pooled" and type(build_model(old).mask_cls).__name__ == "MaskPooledClassifier"
    assert type(build_model(Solov2Config(num_classes=2)).mask_cls).__name__ == "RoIMaskClassifier"
    with pytest.raises(ValueError, match="mask_cls_kind"):
        build_model(Solov2Config(num_classes=2, mask_cls_kind="box"))


def test_a_candidates_objectness_is_the_chance_that_any_class_is_there() -> None:
    """noisy-OR over the cell's grid class scores: an object the grid splits between two classes is
    still found (0.4 and 0.4 -> 0.64, where the best one says 0.4); "max" is the rule of old configs."""
    grid = torch.tensor([[0.4, 0.4, 0.0], [0.9, 0.05, 0.05], [0.0, 0.0, 0.0], [1.0, 0.2, 0.3]])
    model = build_model(Solov2Config(num_classes=3, point_head=False))
    assert model.cfg.mask_cls_objectness == "noisy_or"
    want = 1 - torch.prod(1 - grid, dim=1)
    torch.testing.assert_close(model.objectness(grid), want, atol=1e-6, rtol=0)
    assert (model.objectness(grid) >= grid.max(1).values).all()
    old = Solov2Config.from_dict({"num_classes": 3, "mask_classifier": True, "mask_cls_kind": "roi"})
    assert old.mask_cls_objectness == "max"
    torch.testing.assert_close(build_model(old).objectness(grid), grid.max(1).values)
    with pytest.raises(ValueError, match="mask_cls_objectness"):
        build_model(Solov2Config(num_classes=3, mask_cls_objectness="mean"))


def test_mask_features_read_the_backbone_stride_2_map() -> None:
    """mask_fine adds a stride-2 conv of the first backbone stage to the stride-4 mask features: they
    change with that stage's output, which without it reaches them only through the FPN's deeper maps."""
    torch.manual_seed(0)
    model = build_model(Solov2Config(num_classes=2)).eval()
    assert model.mask_branch.fine is not None
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model.features(images)["mask_feat"]
        c1 = model.backbone(images)[0]
        fine = model.mask_branch.fine(c1)
        model.mask_branch.fine[0].weight.zero_()
        after = model.features(images)["mask_feat"]
    assert before.shape == (1, 32, 16, 16) and fine.shape[-2:] == before.shape[-2:]
    assert not torch.allclose(before, after)
    assert build_model(Solov2Config(num_classes=2, mask_fine=False)).mask_branch.fine is None


@pytest.mark.parametrize("kind", ["roi", "pooled"])
def test_mask_classifier_trains_and_names_each_mask_at_most_topk_times(shapes_root: Path, kind: str) -> None:
    torch.manual_seed(0)
    cfg = Solov2Config(num_classes=3, point_head=False, mask_cls_topk=2, mask_cls_kind=kind)
    model = build_model(cfg).train()
    images, targets = _batch(shapes_root, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cls_losses = []
    for _ in range(40):
        losses = model(images, targets)
        cls_losses.append(float(losses["mask_cls"].detach()))
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert np.mean(cls_losses[-3:]) < 0.75 * np.mean(cls_losses[:3])
    model.eval()
    model.set_score_threshold(0.0)
    model.cfg.mask_thr = 0.0  # 40 steps do not make confident masks yet; keep every candidate's mask
    with torch.no_grad():
        out = model(images)
    picked = model.select(out, 0)
    assert picked is not None
    cell, label, scores, _ = picked
    assert len(cell) > 0
    assert torch.bincount(cell).max() <= 2          # one mask per cell, its two likeliest classes
    assert (scores[1:] <= scores[:-1]).all()
    res = model.postprocess(out, 0, (64, 64), (64, 64))
    assert res["masks"].shape[1:] == (64, 64) and len(res["labels"]) == len(res["scores"])


def test_the_class_decision_is_a_product_of_the_classifier_and_the_grid(shapes_root: Path) -> None:
    """reclassify: with the classifier unsure (uniform) the grid's class ranking decides, with the grid
    ignored (weight 0) the classifier's; every score is objectness x a probability, so never above
    the cell's grid score (what select's early threshold relies on)."""
    torch.manual_seed(0)
    cfg = Solov2Config(num_classes=3, point_head=False, mask_cls_topk=3)
    model = build_model(cfg).eval()
    images, _ = _batch(shapes_root, cfg)
    with torch.no_grad():
        model.head.cate_out.weight.normal_(0, 0.3)
        out = model(images)
        grid = torch.sigmoid(out["cate"][0])
        cell = torch.arange(0, grid.shape[0], 7)
        objectness = grid[cell].max(1).values
        probs = torch.rand(len(cell), *out["mask_feat"].shape[-2:])
        masks = probs > 0.5
        area = masks.flatten(1).sum(1).float()
        logits = torch.logit(probs)
        last = model.mask_cls.fc[-1]
        model.cfg.update_thr = 0.0
        last.weight.zero_()
        last.bias.zero_()  # the classifier says 1/3 for every class
        got_cell, got_label, got_score, *_ = model.reclassify(out, 0, cell, objectness, logits, probs, masks, area)
        top1 = got_label.view(len(cell), 3)[:, 0]
        assert torch.equal(top1, grid[cell].argmax(1))
        assert torch.equal(got_cell, cell.repeat_interleave(3))
        assert (got_score <= objectness.repeat_interleave(3) + 1e-6).all()
        torch.testing.assert_close(got_score.view(len(cell), 3).sum(1), objectness)  # all 3 classes kept
        model.cfg.mask_cls_grid_weight = 0.0
        last.bias.copy_(torch.tensor([0.0, 0.0, 3.0]))  # the classifier is sure it is class 2
        _, got_label, got_score, *_ = model.reclassify(out, 0, cell, objectness, logits, probs, masks, area)
        assert (got_label.view(len(cell), 3)[:, 0] == 2).all()
        p2 = float(torch.softmax(last.bias, 0)[2])
        torch.testing.assert_close(got_score.view(len(cell), 3)[:, 0], objectness * p2)


@pytest.mark.parametrize("mask_classifier", [False, True])
def test_a_score_threshold_keeps_exactly_the_detections_scoring_above_it(shapes_root: Path,
                                                                        mask_classifier: bool) -> None:
    """select() drops candidates under the final threshold before computing masks (for speed); the
    result must equal thresholding the full output, Matrix NMS decay included."""
    torch.manual_seed(0)
    cfg = Solov2Config(num_classes=3, point_head=False, mask_classifier=mask_classifier)
    model = build_model(cfg).eval()
    with torch.no_grad():  # spread the grid scores over (0, 1) and make masks, as a trained model does
        model.head.cate_out.weight.normal_(0, 0.1)
        model.head.cate_out.bias.fill_(-1.0)
        model.head.kernel_out.weight.mul_(300.0)  # confident masks: maskness ~1, scores stay near grid scores
    images, _ = _batch(shapes_root, cfg)
    with torch.no_grad():
        out = model(images)
    # no grid score rounds to 1.0 in float32: tied top scores may be ordered either way, and so may
    # Matrix NMS's decay between them (with std 0.3 here, 14 ties did, after a network change)
    assert (torch.sigmoid(out["cate"]) < 1).all()
    model.cfg.update_thr, model.cfg.max_per_img = 0.0, 10_000  # no top-k cut: compare whole lists
    every = model.select(out, 0)
    assert every is not None and len(every[0]) > 10
    for threshold in every[2].quantile(torch.tensor([0.2, 0.4, 0.6, 0.8])).tolist():
        model.cfg.update_thr = threshold
        above = every[2] >= threshold
        assert 0 < int(above.sum()) < len(every[2])
        picked = model.select(out, 0)
        assert picked is not None
        for got, want in zip(_tie_order(picked), _tie_order(tuple(t[above] for t in every))):
            torch.testing.assert_close(got, want)


def _tie_order(picked: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``select``'s output ordered by score, then cell and label: detections with the same float
    score may come in either order."""
    cell, label, score = (t.detach().numpy() for t in picked[:3])
    order = torch.from_numpy(np.lexsort((label, cell, -score)))
    return tuple(t[order] for t in picked)


def test_roi_classifier_loss_pairs_each_crop_with_its_own_label(shapes_root: Path) -> None:
    """The classifier's loss over the batch's GT masks and the crop bank equals cross-entropy computed
    by hand, crop by crop (a label list out of step with the crops would still train, on noise)."""
    from blender_instseg.ml.data import InstanceDataset
    from blender_instseg.ml.models.solov2 import PIXEL_MEAN, PIXEL_STD, SOLOv2Lite

    torch.manual_seed(0)
    cfg = Solov2Config(num_classes=3, point_head=False, mask_cls_views=1, mask_cls_bank=5, mask_cls_permute=False)
    model = build_model(cfg).train()
    src = load_coco_source(shapes_root / "annotations.json")
    ds = InstanceDataset(src, src.category_ids, 64, seed=0, make_targets=SOLOv2Lite.make_targets(cfg),
                         crop_bank=SOLOv2Lite.crop_bank(cfg))
    images, targets = collate([ds[(i, 0)] for i in range(3)])
    assert all(len(t["object_crops"]) == 5 for t in targets)
    loss = model(images, targets)["mask_cls"]
    out = model.features(images)
    logits, labels = [], []
    for b, t in enumerate(targets):
        if len(t["cell_index"]) == 0:
            continue
        soft = torch.nn.functional.avg_pool2d(t["masks"].float()[None], 4)[0]
        logits.append(model.mask_cls(out["fine"][0][b], out["mask_feat"][b], soft))
        crops = t["object_crops"].clone()
        crops[:, :3] = (crops[:, :3] - PIXEL_MEAN) / PIXEL_STD
        logits.append(model.mask_cls.classify(crops))
        labels += [t["labels"], t["object_crop_labels"]]
    want = torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(labels))
    torch.testing.assert_close(loss, want)
