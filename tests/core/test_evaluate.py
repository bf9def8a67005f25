"""core.evaluation.evaluate: report folder, plots, the CLI contract and bad input through the CLI."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blender_instseg.core.evaluation import evaluate as E
from tests.core.test_metrics import perfect_predictions, perturbed_predictions
from tests.shapes import make_shapes_dataset

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, dict]:
    path = make_shapes_dataset(tmp_path / "shapes", n_images=6, size=64, seed=2)
    return path, json.loads(path.read_text())


def _strict_json(path: Path) -> dict:
    def no_constants(name: str):
        raise AssertionError(f"non-standard JSON constant {name} in {path}")
    return json.loads(path.read_text(), parse_constant=no_constants)


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000, path


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    E.configure_parser(parser)
    rc = E.run(parser.parse_args(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_report_folder_for_perfect_predictions(dataset, tmp_path: Path) -> None:
    path, gt = dataset
    out = tmp_path / "report"
    m = E.evaluate(path, perfect_predictions(gt), out_dir=out)
    assert m["segm"]["AP"] == 1.0 and m["boundary"]["mean_boundary_iou"] == 1.0
    saved = _strict_json(out / "metrics.json")
    assert saved["segm"] == m["segm"] and saved["boundary"]["AP"] == 1.0
    for key in ("segm", "boundary", "per_category", "by_occlusion", "by_size", "at_threshold", "worst_images", "counts"):
        assert key in saved
    _assert_png(out / "pr_curves.png")
    _assert_png(out / "ap_by_occlusion.png")
    assert not (out / "worst_images.png").exists()        # nothing went wrong, nothing to show
    report = (out / "report.md").read_text()
    assert "| mask | 100.0 | 100.0 | 100.0 |" in report and "No image has any error." in report
    assert sorted(p.name for p in out.iterdir()) == ["ap_by_occlusion.png", "metrics.json", "pr_curves.png",
                                                     "report.md"]  # no temp files left behind


def test_worst_images_grid_with_and_without_the_rgb_images(dataset, tmp_path: Path) -> None:
    path, gt = dataset
    preds = perturbed_predictions(gt, seed=3)
    m = E.evaluate(path, preds, out_dir=tmp_path / "a", worst=4)
    assert 0 < len(m["worst_images"]) <= 4
    assert m["files"]["worst_images"] == "worst_images.png"
    _assert_png(tmp_path / "a" / "worst_images.png")
    shutil.rmtree(path.parent / "images")                   # images gone: drawn on grey, still a plot
    E.evaluate(path, preds, out_dir=tmp_path / "b", worst=4)
    _assert_png(tmp_path / "b" / "worst_images.png")


def test_no_plots_and_missing_matplotlib_skip_plots(dataset, tmp_path: Path, monkeypatch, caplog) -> None:
    path, gt = dataset
    preds = perturbed_predictions(gt, seed=4)
    E.evaluate(path, preds, out_dir=tmp_path / "np", plots=False)
    assert not list((tmp_path / "np").glob("*.png"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # as if matplotlib were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with caplog.at_level(logging.WARNING):
        m = E.evaluate(path, preds, out_dir=tmp_path / "nomp")
    assert "plots skipped" in caplog.text
    assert not list((tmp_path / "nomp").glob("*.png")) and (tmp_path / "nomp" / "metrics.json").exists()
    assert m["segm"]["AP"] > 0


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, blender_instseg.core.evaluation.evaluate; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_cli_prints_the_report(dataset, tmp_path: Path, capsys) -> None:
    path, gt = dataset
    pred_file = tmp_path / "preds.json"
    pred_file.write_text(json.dumps(perturbed_predictions(gt, seed=5)))
    rc, out, err = _cli(["--gt", str(path), "--pred", str(pred_file), "--out", str(tmp_path / "r"),
                         "--score-threshold", "0.3", "--worst", "3", "--no-plots"], capsys)
    assert rc == 0, err
    assert out.startswith("# Evaluation (6 images") and "| boundary |" in out
    saved = _strict_json(tmp_path / "r" / "metrics.json")
    assert saved["params"]["score_threshold"] == 0.3 and len(saved["worst_images"]) <= 3


def _bad_pred(gt: dict, kind: str):
    preds = perfect_predictions(gt)
    if kind == "unknown_image":
        preds[0]["image_id"] = 12345
    elif kind == "unknown_category":
        preds[0]["category_id"] = 99
    elif kind == "malformed_rle":
        preds[0]["segmentation"]["counts"] = "zz~~"
    elif kind == "size_mismatch":
        preds[0]["segmentation"]["size"] = [10, 64]
    elif kind == "not_a_list":
        return {"hello": 1}
    return preds


@pytest.mark.parametrize("kind, message", [
    ("unknown_image", "not in the ground truth"),
    ("unknown_category", "category id"),
    ("malformed_rle", "malformed RLE"),
    ("size_mismatch", "does not match"),
    ("not_a_list", "must be a JSON list"),
])
def test_cli_bad_predictions_exit_2_with_one_line(dataset, tmp_path: Path, capsys, kind: str, message: str) -> None:
    path, gt = dataset
    pred_file = tmp_path / "preds.json"
    pred_file.write_text(json.dumps(_bad_pred(gt, kind)))
    rc, out, err = _cli(["--gt", str(path), "--pred", str(pred_file), "--out", str(tmp_path / "r")], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_cli_bad_files_and_args(dataset, tmp_path: Path, capsys) -> None:
    path, gt = dataset
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('[{"image_id": 1,')
    good = tmp_path / "preds.json"
    good.write_text(json.dumps(perfect_predictions(gt)))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["--gt", str(path), "--pred", str(corrupt)], "not valid JSON"),
        (["--gt", str(path), "--pred", str(tmp_path / "nope.json")], "not found"),
        (["--gt", str(tmp_path / "nogt.json"), "--pred", str(good)], "not found"),
        (["--gt", str(corrupt), "--pred", str(good)], "not valid JSON"),
        (["--gt", str(path), "--pred", str(good), "--dilation-ratio", "0"], "dilation-ratio"),
        (["--gt", str(path), "--pred", str(good), "--worst", "-1"], "--worst"),
        (["--gt", str(path), "--pred", str(good), "--score-threshold", "nan"], "score-threshold"),
    ]
    for argv, message in cases:
        rc, _, err = _cli(argv + ["--out", str(tmp_path / "r")], capsys)
        assert rc == 2 and err.count("\n") == 1 and message in err, (argv, err)
    rc, _, err = _cli(["--gt", str(path), "--pred", str(good), "--out", str(a_file)], capsys)
    assert rc == 2 and "is a file" in err


def test_empty_predictions_through_the_cli(dataset, tmp_path: Path, capsys) -> None:
    path, _ = dataset
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    rc, out, _ = _cli(["--gt", str(path), "--pred", str(empty), "--out", str(tmp_path / "r")], capsys)
    assert rc == 0 and "| mask | 0.0 |" in out
    assert _strict_json(tmp_path / "r" / "metrics.json")["boundary"]["mean_boundary_iou"] is None


def test_real_dispatcher_entry_point(dataset, tmp_path: Path) -> None:
    from blender_instseg.core.__main__ import COMMANDS

    assert [m for m, _ in COMMANDS.values() if importlib.util.find_spec(m) is None] == []
    path, gt = dataset
    pred_file = tmp_path / "preds.json"
    pred_file.write_text(json.dumps(perfect_predictions(gt)))
    cmd = [sys.executable, "-m", "blender_instseg.core", "evaluate", "--gt", str(path), "--pred", str(pred_file),
           "--out", str(tmp_path / "r"), "--no-plots"]
    ok = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "| mask | 100.0" in ok.stdout
    bad = subprocess.run(cmd[:-5] + ["--pred", str(path.parent / "missing.json"), "--out", str(tmp_path / "x")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.strip().count("\n") == 0
