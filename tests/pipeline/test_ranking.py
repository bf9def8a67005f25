"""The loop's ranking picks the images with the worst errors, on a hand-made case (real pycocotools)."""

from __future__ import annotations

import numpy as np
import pytest

from pycocotools import mask as mask_utils
from blender_instseg.pipeline.ranking import ScoreWeights, score_images, select_seeds

SIZE = 48
BOXES = [(4, 4), (4, 28), (28, 16)]  # three 12x12 squares per image (y, x of the top-left corner)


def square(y: int, x: int, dy: int = 0, dx: int = 0, side: int = 12) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[y + dy:y + dy + side, x + dx:x + dx + side] = 1
    return m


def rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}


def build_case() -> tuple[dict, list[dict]]:
    """Seven images: 1 perfect, 2 two missed, 3 perfect + false positives, 4 sloppy masks,
    5 one heavily occluded object missed, 6 one fully visible object missed, 7 perfect."""
    images, anns, preds = [], [], []
    for img_id in range(1, 8):
        images.append({"id": img_id, "file_name": f"images/{img_id:06d}.png", "width": SIZE, "height": SIZE,
                       "seed": 1000 + img_id, "index": img_id - 1})
        for k, (y, x) in enumerate(BOXES):
            vis = 0.2 if (img_id == 5 and k == 0) else 1.0
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1, "iscrowd": 0,
                         "segmentation": rle(square(y, x)), "area": 144, "bbox": [x, y, 12, 12],
                         "visible_fraction": vis})
            missed = (img_id == 2 and k < 2) or (img_id in (5, 6) and k == 0)
            if missed:
                continue
            mask = square(y, x, 1, 2) if img_id == 4 else square(y, x)
            preds.append({"image_id": img_id, "category_id": 1, "score": 0.9, "segmentation": rle(mask)})
        if img_id == 3:
            for y, x in ((30, 36), (36, 2)):
                preds.append({"image_id": 3, "category_id": 1, "score": 0.8, "segmentation": rle(square(y, x, side=8))})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cube"}]}
    return gt, preds


def test_ranking_puts_the_worst_images_first() -> None:
    gt, preds = build_case()
    scores = score_images(gt, preds)
    by_id = {s.image_id: s for s in scores}
    # two of three objects missed, and every outline off by 1-2 px (Boundary IoU near 0 at this size)
    assert {s.image_id for s in scores[:2]} == {2, 4}
    assert by_id[2].n_missed == 2 and by_id[2].score == pytest.approx(2 / 3)
    assert by_id[1].score == 0 and by_id[7].score == 0  # perfect images never rank above a flawed one
    assert {s.image_id for s in scores[-2:]} == {1, 7}
    assert by_id[3].n_false_pos == 2 and by_id[3].score == pytest.approx(1 / 4)  # 0.5*2 / (3 + 0.5*2)
    # a sloppy outline costs through mask IoU and (more) Boundary IoU
    assert by_id[4].n_missed == 0 and by_id[4].mean_boundary_iou < by_id[4].mean_mask_iou < 0.7
    assert by_id[4].score > by_id[6].score
    # missing a mostly hidden object weighs more than missing a visible one
    assert by_id[5].score == pytest.approx(1.8 / 3.8) and by_id[6].score == pytest.approx(1 / 3)
    assert by_id[5].occlusion == pytest.approx(0.8 / 3)
    # without the occlusion weight both misses cost the same
    plain = {s.image_id: s.score for s in score_images(gt, preds, weights=ScoreWeights(occlusion=0.0))}
    assert plain[5] == pytest.approx(plain[6])


def test_select_seeds_mines_the_worst_and_spreads_the_budget() -> None:
    gt, preds = build_case()
    scores = score_images(gt, preds)
    plan = select_seeds(scores, budget=7, per_seed=2)
    chosen = [p["seed"] for p in plan]
    assert chosen == [1004, 1002, 1005, 1006]  # ceil(7/2) = 4 worst, worst first
    assert [p["count"] for p in plan] == [2, 2, 2, 1] and all(p["first"] == 0 for p in plan)
    assert plan[1]["why"]["n_missed"] == 2 and plan[1]["why"]["score"] == pytest.approx(2 / 3, abs=1e-6)
    # a later round continues the variant numbering of seeds mined before
    again = select_seeds(scores, budget=2, per_seed=2, used={1004: 2})
    assert again == [{**plan[0], "count": 2, "first": 2}]
    # only flawed images are mined: 5 flawed images share a budget of 20
    many = select_seeds(scores, budget=20, per_seed=2)
    assert len(many) == 5 and sum(p["count"] for p in many) == 20 and 1001 not in {p["seed"] for p in many}
    with pytest.raises(ValueError, match="no mined image has a seed"):
        select_seeds([s.__class__(**{**s.__dict__, "seed": None}) for s in scores], 4, 2)


def test_ties_go_to_the_image_with_more_errors() -> None:
    """A weak model misses everything (every score 1): the crowded image is mined first, not the lowest id."""
    gt, _ = build_case()
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != 1 or a["id"] % 3 == 1]  # image 1: 1 object
    scores = score_images(gt, [])
    assert all(s.score == 1.0 for s in scores)
    assert scores[-1].image_id == 1 and scores[0].image_id == 2
