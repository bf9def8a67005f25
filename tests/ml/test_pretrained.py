"""The bundled pretrained weights: a new run starts from them, category heads are swapped, predict runs them.

Runs the real CLI (``python -m blender_instseg.ml``) on the tiny shapes dataset; ``--lr 0`` keeps the
weights exactly where they started, so what was loaded can be compared tensor by tensor.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from blender_instseg.ml.checkpoint import load_checkpoint
from blender_instseg.ml.pretrained import category_head_keys
from blender_instseg.ml.weights import SHIPPED, WEIGHTS_ENV
from tests.bad_input import assert_one_error_line, snapshot
from tests.ml.conftest import run_cli

FROZEN = ["--batch-size", "2", "--image-size", "64", "--checkpoint-every", "0", "--lr", "0", "--steps", "1"]


def _train(shapes_root: Path, out: Path, *extra: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run_cli("train", "--data", str(shapes_root), "--out", str(out), *FROZEN, *extra, env=env)


def test_the_shipped_weights_are_a_class_agnostic_checkpoint() -> None:
    ckpt = load_checkpoint(SHIPPED)  # format tag, weights_only and checksum, as every checkpoint
    assert [c["name"] for c in ckpt["categories"]] == ["object"]
    assert ckpt["model_config"]["arch"] == "solov2" and ckpt["model_config"]["num_classes"] == 1
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert "optimizer" not in ckpt and ckpt["recipe"]["command"].startswith("python benchmarks/pretrain_weights.py")
    assert SHIPPED.stat().st_size < 4_000_000


def test_a_new_run_starts_from_the_bundled_weights_with_a_fresh_category_head(shapes_root: Path, tmp_path: Path) -> None:
    proc = _train(shapes_root, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "starts from the bundled pretrained weights" in proc.stderr
    assert "category head is re-initialised" in proc.stderr
    bundled = load_checkpoint(SHIPPED)
    got = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert got["train_config"]["init"] == str(SHIPPED)
    assert got["model_config"]["num_classes"] == len(got["categories"]) > 1
    assert got["model_config"]["mask_cls_objectness"] == "noisy_or"  # the current rule, not old checkpoints' "max"
    head = category_head_keys(bundled["model_config"])
    assert head and all(("cate" in k or "cls" in k) for k in head)
    for key, value in bundled["model"].items():
        if key in head:
            assert got["model"][key].shape != value.shape  # sized for this dataset's categories
            if key.startswith("head.cate_out."):  # every category's grid scores start as "object"'s
                torch.testing.assert_close(got["model"][key], value.float().expand_as(got["model"][key]), msg=key)
            else:  # the classifier's one-class softmax learnt nothing: fresh
                assert not torch.equal(got["model"][key][:1], value.float()), key
        else:
            torch.testing.assert_close(got["model"][key], value.float(), msg=key)


def test_init_none_and_other_networks_start_from_random_weights(shapes_root: Path, tmp_path: Path) -> None:
    scratch = _train(shapes_root, tmp_path / "none", "--init", "none")
    assert scratch.returncode == 0, scratch.stderr
    assert "random weights (--init none)" in scratch.stderr
    got = torch.load(tmp_path / "none" / "last.pt", weights_only=True)
    bundled = load_checkpoint(SHIPPED)["model"]
    assert got["train_config"]["init"] is None
    same_shape = [k for k, v in bundled.items() if got["model"][k].shape == v.shape]
    assert not any(torch.allclose(got["model"][k], bundled[k].float()) for k in same_shape if bundled[k].numel() > 1
                   and bundled[k].float().std() > 0)
    other = _train(shapes_root, tmp_path / "cfg", "--model-config", "fpn_channels=32")
    assert other.returncode == 0, other.stderr
    assert "random weights (the bundled weights are for the default solov2; this run sets --model-config)" in other.stderr


def test_an_explicit_init_of_another_network_is_refused(shapes_root: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    for extra, words in ((["--init", "bundled", "--model", "yolact"], "differs from the checkpoint's model"),
                         (["--init", "bundled", "--model-config", "fpn_channels=32"], "cannot change the network")):
        proc = _train(shapes_root, tmp_path / "run", *extra)
        assert_one_error_line(proc.returncode, proc.stderr, words)
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def agnostic_run(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("agnostic") / "run"
    proc = _train(shapes_root, run, "--class-agnostic", "--init", "none")
    assert proc.returncode == 0, proc.stderr
    return run


def test_an_init_checkpoint_of_other_categories_gives_all_but_its_category_head(agnostic_run: Path, shapes_root: Path,
                                                                               tmp_path: Path) -> None:
    src = torch.load(agnostic_run / "last.pt", weights_only=True)
    assert src["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    assert src["model_config"]["num_classes"] == 1
    ft = _train(shapes_root, tmp_path / "ft", "--init", str(agnostic_run / "last.pt"))
    assert ft.returncode == 0, ft.stderr
    assert "re-initialised for this dataset's" in ft.stderr and "trained on: object" in ft.stderr
    got = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    head = category_head_keys(src["model_config"])
    for key, value in src["model"].items():
        if key not in head:
            torch.testing.assert_close(got["model"][key], value, msg=key)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_bundled_weights_are_one_line_naming_the_file(damage: str, shapes_root: Path,
                                                                        tmp_path: Path) -> None:
    weights = tmp_path / "weights" / "w.pt"
    weights.parent.mkdir()
    if damage == "corrupt":
        data = bytearray(SHIPPED.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    before = snapshot(tmp_path)
    proc = _train(shapes_root, tmp_path / "run", env={WEIGHTS_ENV: str(weights)})
    assert_one_error_line(proc.returncode, proc.stderr,
                          "bundled weights missing" if damage == "missing" else "corrupt checkpoint")
    assert str(weights) in proc.stderr
    assert snapshot(tmp_path) == before
    assert _train(shapes_root, tmp_path / "run", "--init", "none", env={WEIGHTS_ENV: str(weights)}).returncode == 0


def test_predict_with_the_bundled_weights_names_every_object_object(shapes_root: Path, tmp_path: Path) -> None:
    images = sorted((shapes_root / "images").iterdir())[:2] if (shapes_root / "images").is_dir() else []
    if not images:
        images = sorted(p for p in shapes_root.rglob("*.png"))[:2]
    copy = tmp_path / "in"
    copy.mkdir()
    for p in images:
        shutil.copy(p, copy / p.name)
    out = tmp_path / "pred.json"
    proc = run_cli("predict", "--checkpoint", "bundled", "--images", str(copy), "--out", str(out),
                   "--score-threshold", "0")
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(out.read_text())
    assert preds and {p["category_id"] for p in preds} == {1}


def test_evaluate_class_agnostic_scores_every_object_as_one_category(agnostic_run: Path, shapes_root: Path,
                                                                    tmp_path: Path) -> None:
    args = ["evaluate", "--checkpoint", str(agnostic_run / "last.pt"), "--data", str(shapes_root), "--no-plots"]
    before = snapshot(tmp_path)
    refused = run_cli(*args, "--out", str(tmp_path / "plain"))
    assert_one_error_line(refused.returncode, refused.stderr, "pass --class-agnostic")
    assert snapshot(tmp_path) == before
    proc = run_cli(*args, "--out", str(tmp_path / "report"), "--class-agnostic")
    assert proc.returncode == 0, proc.stderr
    folded = json.loads((tmp_path / "report" / "annotations_object.json").read_text())
    original = json.loads((shapes_root / "annotations.json").read_text())
    assert folded["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    assert len(folded["annotations"]) == len(original["annotations"]) and \
        {a["category_id"] for a in folded["annotations"]} == {1}
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert 0.0 <= metrics["segm"]["AP"] <= 1.0
