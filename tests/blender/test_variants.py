"""Scene variants (``--variants-of PLAN.json``): the parent's recipe, other pixels, bit-exact determinism.

Masks-only at 64x64 like tests/blender/test_generate.py (about 0.1 s per image).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

from blender_instseg.blender.generate import main as generate  # noqa: E402
from blender_instseg.blender.scene import builder  # noqa: E402
from blender_instseg.core import plan  # noqa: E402
from blender_instseg.core.formats import dataset  # noqa: E402
from blender_instseg.core.validation.validate import validate_dataset  # noqa: E402

SMALL = ["--resolution", "64", "--masks-only", "--min-objects", "3", "--max-objects", "6", "--progress", "none",
         "--no-preview", "--no-depth"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def fresh_blender():
    builder.reset_blender()
    yield


def records(root: Path) -> list[dict]:
    return [dataset.read_record(dataset.record_path(root, i)) for i in sorted(dataset.completed_indices(root))]


def test_variants_keep_the_recipe_and_change_the_view(tmp_path: Path) -> None:
    base = tmp_path / "base"
    assert generate(["--out", str(base), "--num-images", "2", "--seed", "5", *SMALL]) == 0
    parents = records(base)
    plan_path = plan.write_plan(tmp_path / "plan.json", [{"seed": parents[0]["seed"], "count": 2},
                                                         {"seed": parents[1]["seed"], "count": 1, "first": 3}])
    out = tmp_path / "v"
    assert generate(["--out", str(out), "--variants-of", str(plan_path), *SMALL]) == 0
    got = records(out)
    assert [(r["parent_seed"], r["variant"]) for r in got] == [(parents[0]["seed"], 0), (parents[0]["seed"], 1),
                                                                (parents[1]["seed"], 3)]
    assert [r["seed"] for r in got] == [plan.variant_seed(r["parent_seed"], r["variant"]) for r in got]
    for rec in got:
        parent = parents[0] if rec["parent_seed"] == parents[0]["seed"] else parents[1]
        assert rec["num_objects"] == parent["num_objects"]
        # the same objects (instance id -> shape and category) as the parent
        parent_objs = {a["instance_id"]: (a["object_name"], a["category_id"]) for a in parent["annotations"]}
        assert all(parent_objs.get(a["instance_id"], (a["object_name"], a["category_id"]))
                   == (a["object_name"], a["category_id"]) for a in rec["annotations"])
        assert rec["scene"]["camera"] != parent["scene"]["camera"]
        assert rec["scene"]["parent_seed"] == parent["seed"]
        assert (out / rec["mask_file"]).read_bytes() != (base / parent["mask_file"]).read_bytes()
    assert got[0]["scene"]["camera"] != got[1]["scene"]["camera"]  # two variants of one seed differ too
    coco = json.loads((out / "annotations.json").read_text())
    assert [(im["parent_seed"], im["variant"]) for im in coco["images"]] == [
        (r["parent_seed"], r["variant"]) for r in got]
    report = validate_dataset(out)
    assert report.ok, report.errors[:3]

    # the same plan gives identical bytes; --only-index re-renders one variant exactly
    again = tmp_path / "v2"
    assert generate(["--out", str(again), "--variants-of", str(plan_path), *SMALL]) == 0
    assert tree(again) == tree(out)
    before = tree(out)
    (out / "masks" / "000001.png").unlink()
    (out / "records" / "000001.json").unlink()
    assert generate(["--out", str(out), "--variants-of", str(plan_path), *SMALL, "--only-index", "1"]) == 0
    assert tree(out) == before


def test_variant_scene_shares_shapes_and_scales() -> None:
    """In-process build: the variant replays the parent's objects (mesh, scale) and only nudges the layout."""
    from blender_instseg.core.genconfig import GeneratorConfig

    cfg = GeneratorConfig()
    cfg.objects.min_count, cfg.objects.max_count = 4, 8

    def summary(built: builder.BuiltScene) -> list[tuple]:
        return [(o.shape, o.category_id, round(o.obj.scale[0], 6), tuple(o.obj.location)) for o in built.objects]

    parent = summary(builder.build_scene(cfg, 1234, build_appearance=False))
    variant = summary(builder.build_scene(cfg, plan.variant_seed(1234, 0), build_appearance=False, parent_seed=1234))
    assert [p[:3] for p in parent] == [v[:3] for v in variant]
    moves = [np.hypot(p[3][0] - v[3][0], p[3][1] - v[3][1]) for p, v in zip(parent, variant)]
    assert max(moves) > 0 and max(moves) <= builder.PERTURBATION.position + 1e-6
    assert [p[3][2] for p in parent] == pytest.approx([v[3][2] for v in variant])  # same resting height


def test_bad_plans_are_one_line_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"seed": 1, "count": 0}]))
    assert generate(["--out", str(tmp_path / "o"), "--variants-of", str(bad), *SMALL]) == 2
    assert "'count' must be an integer >= 1" in capsys.readouterr().err
    dup = plan.write_plan(tmp_path / "ok.json", [{"seed": 1, "count": 2}])
    assert generate(["--out", str(tmp_path / "o"), "--variants-of", str(dup), "--num-images", "3", *SMALL]) == 2
    assert "differs from the 2 variants" in capsys.readouterr().err
    with pytest.raises(ValueError, match="variant 1 of seed 1 twice"):
        plan.parse_plan([{"seed": 1, "count": 2}, {"seed": 1, "count": 1, "first": 1}])


def test_variants_with_workers_equal_one_process(tmp_path: Path) -> None:
    plan_path = plan.write_plan(tmp_path / "plan.json", [{"seed": 11, "count": 2}, {"seed": 12, "count": 1}])
    assert generate(["--out", str(tmp_path / "one"), "--variants-of", str(plan_path), *SMALL]) == 0
    assert generate(["--out", str(tmp_path / "two"), "--variants-of", str(plan_path), *SMALL, "--workers", "2"]) == 0
    assert tree(tmp_path / "two") == tree(tmp_path / "one")
    # a resume with another plan is refused: the plan is part of the dataset's identity
    other = plan.write_plan(tmp_path / "other.json", [{"seed": 11, "count": 3}])
    assert generate(["--out", str(tmp_path / "one"), "--variants-of", str(other), *SMALL]) == 2
