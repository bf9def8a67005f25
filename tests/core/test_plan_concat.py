"""Variant plans (core.plan) and COCO concatenation (core.concat): bpy-free, torch-free."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blender_instseg.core import concat, plan
from blender_instseg.core.formats.dataset import load_coco


def test_plan_round_trip_and_expansion(tmp_path: Path) -> None:
    path = plan.write_plan(tmp_path / "p.json", [{"seed": 7, "count": 2, "why": {"score": 0.9}},
                                                 plan.PlanEntry(seed=3, count=1, first=4)])
    entries = plan.read_plan(path)
    assert entries == [plan.PlanEntry(7, 2, 0), plan.PlanEntry(3, 1, 4)]
    assert plan.expand_plan(entries) == [(7, 0), (7, 1), (3, 4)]
    seeds = [plan.variant_seed(s, k) for s, k in plan.expand_plan(entries)]
    assert len(set(seeds)) == 3 and seeds == [plan.variant_seed(s, k) for s, k in [(7, 0), (7, 1), (3, 4)]]
    assert plan.variant_seed(7, 0) != plan.variant_seed(7, 1) != plan.variant_seed(8, 0)


@pytest.mark.parametrize(("data", "fragment"), [
    ([], "non-empty JSON list"),
    ({"seed": 1}, "non-empty JSON list"),
    ([{"seed": 1}], "'count' must be an integer >= 1"),
    ([{"seed": -1, "count": 1}], "'seed' must be an integer >= 0"),
    ([{"seed": 1, "count": 1, "frist": 2}], "unknown key 'frist'"),
    ([{"seed": 1, "count": True}], "'count' must be an integer"),
    ([{"seed": 1, "count": 2}, {"seed": 1, "count": 1, "first": 1}], "variant 1 of seed 1 twice"),
])
def test_bad_plans(data: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        plan.parse_plan(data)


def _coco(images: list[str], cats: list[dict], n_anns: int = 1, start_id: int = 10) -> dict:
    imgs = [{"id": start_id + i, "file_name": f, "width": 4, "height": 4, "mask_file": f"masks/{i}.png"}
            for i, f in enumerate(images)]
    anns = [{"id": 100 + 10 * i + k, "image_id": im["id"], "category_id": cats[0]["id"], "bbox": [0, 0, 1, 1],
             "area": 1, "iscrowd": 0, "segmentation": [[0, 0, 1, 0, 1, 1]]} for i, im in enumerate(imgs)
            for k in range(n_anns)]
    return {"images": imgs, "annotations": anns, "categories": cats}


def test_concat_renumbers_and_rebases_paths(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "cube"}, {"id": 2, "name": "cone"}]
    a, b = tmp_path / "a", tmp_path / "deep" / "b"
    a.mkdir()
    b.mkdir(parents=True)
    (a / "ann.json").write_text(json.dumps(_coco(["images/x.png", "images/y.png"], cats, n_anns=2)))
    (b / "ann.json").write_text(json.dumps(_coco(["images/x.png"], cats[::-1], start_id=10)))
    out = tmp_path / "run" / "train" / "annotations_train.json"
    counts = concat.concat_coco([a / "ann.json", b / "ann.json"], out)
    assert counts == {"images": 3, "annotations": 5}
    data = load_coco(out)
    assert [im["id"] for im in data["images"]] == [1, 2, 3]
    assert [an["id"] for an in data["annotations"]] == [1, 2, 3, 4, 5]
    assert [an["image_id"] for an in data["annotations"]] == [1, 1, 2, 2, 3]
    # paths resolve from the new JSON's folder to the original files
    for im, src in zip(data["images"], [a / "images/x.png", a / "images/y.png", b / "images/x.png"]):
        assert (out.parent / im["file_name"]).resolve() == src.resolve()
    assert (out.parent / data["images"][2]["mask_file"]).resolve() == (b / "masks/0.png").resolve()


def test_concat_refuses_other_categories(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(_coco(["x.png"], [{"id": 1, "name": "cube"}])))
    (tmp_path / "b.json").write_text(json.dumps(_coco(["x.png"], [{"id": 1, "name": "cone"}])))
    with pytest.raises(ValueError, match="categories of .*b.json differ"):
        concat.concat_coco([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()
