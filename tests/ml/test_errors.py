"""Every bad input is one line on stderr (and an error event on stdout), a non-zero exit, no traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from blender_instseg.ml.__main__ import main
from tests.ml.conftest import events, run_cli

pytestmark = pytest.mark.torch


def _one_line_error(code: int, expected_code: int, err: str, out: str, needle: str) -> None:
    assert code == expected_code
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err
    errs = [e for e in events(out) if e.event == "error"]
    assert errs and needle in errs[0].message


def test_no_torch_is_one_line_and_exit_3(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError('No module named torch (test)')\n")
    proc = run_cli("train", "--data", "x", "--out", "y", env={"PYTHONPATH": str(fake)})
    _one_line_error(proc.returncode, 3, proc.stderr, proc.stdout, "torch is not installed in")
    assert "torch==2.13.0" in proc.stderr
    help_proc = run_cli("predict", "--help", env={"PYTHONPATH": str(fake)})
    assert help_proc.returncode == 0 and "--checkpoint" in help_proc.stdout


def test_cli_errors_are_one_line_in_a_child_process(tmp_path: Path) -> None:
    proc = run_cli("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--steps", "1")
    _one_line_error(proc.returncode, 2, proc.stderr, proc.stdout, "dataset not found")


def _call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.err, cap.out


def test_empty_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    code, err, out = _call(capsys, "train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--steps", "1")
    _one_line_error(code, 2, err, out, "dataset has no images")


def test_corrupt_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = tmp_path / "annotations.json"
    ann.write_text("{not json")
    code, err, out = _call(capsys, "train", "--data", str(ann), "--out", str(tmp_path / "run"), "--steps", "1")
    _one_line_error(code, 2, err, out, "not valid JSON")


def test_missing_images(shapes_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "copy"
    shutil.copytree(shapes_root, data)
    (data / "images" / "000003.png").unlink()
    code, err, out = _call(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1")
    _one_line_error(code, 2, err, out, "image file(s) missing")


def test_resume_without_a_run(shapes_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, out = _call(capsys, "train", "--data", str(shapes_root), "--out", str(tmp_path / "run"), "--steps", "1", "--resume")
    _one_line_error(code, 2, err, out, "nothing to resume")


def test_corrupt_and_foreign_checkpoints(shapes_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 100)
    code, err, out = _call(capsys, "predict", "--checkpoint", str(junk), "--images", str(shapes_root / "images"),
                           "--out", str(tmp_path / "p.json"))
    _one_line_error(code, 2, err, out, "is not a checkpoint of this project")
    tiny = tmp_path / "tiny.pt"
    tiny.write_bytes(b"junk")  # too short for torch's header: struct.error inside torch.load
    code, err, out = _call(capsys, "predict", "--checkpoint", str(tiny), "--images", str(shapes_root / "images"),
                           "--out", str(tmp_path / "p.json"))
    _one_line_error(code, 2, err, out, "is not a checkpoint of this project")
    other = tmp_path / "other.pt"
    torch.save({"model": {}, "epoch": 3}, other)
    code, err, out = _call(capsys, "predict", "--checkpoint", str(other), "--images", str(shapes_root / "images"),
                           "--out", str(tmp_path / "p.json"))
    _one_line_error(code, 2, err, out, "is not a checkpoint of this project")
    code, err, out = _call(capsys, "predict", "--checkpoint", str(tmp_path / "nope.pt"), "--images",
                           str(shapes_root / "images"), "--out", str(tmp_path / "p.json"))
    _one_line_error(code, 2, err, out, "checkpoint not found")
    assert not (tmp_path / "p.json").exists()


def test_categories_differ_from_the_checkpoint(trained_run: Path, shapes_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    coco = json.loads((shapes_root / "annotations.json").read_text())
    coco["categories"][0]["name"] = "sphere"
    ann = shapes_root / "renamed.json"
    ann.write_text(json.dumps(coco))
    try:
        code, err, out = _call(capsys, "predict", "--checkpoint", str(trained_run / "last.pt"), "--images", str(ann),
                               "--out", str(tmp_path / "p.json"))
        _one_line_error(code, 2, err, out, "differ from the checkpoint")
        code, err, out = _call(capsys, "evaluate", "--checkpoint", str(trained_run / "last.pt"), "--data", str(ann),
                               "--out", str(tmp_path / "rep"))
        _one_line_error(code, 2, err, out, "differ from the checkpoint")
        resumed = tmp_path / "run"
        shutil.copytree(trained_run, resumed)
        code, err, out = _call(capsys, "train", "--data", str(ann), "--out", str(resumed), "--steps", "20", "--resume")
        _one_line_error(code, 2, err, out, "differ from the checkpoint")
    finally:
        ann.unlink()


def test_missing_raw_image_and_bad_args(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, out = _call(capsys, "predict", "--checkpoint", str(trained_run / "last.pt"), "--images",
                           str(tmp_path / "nope.png"), "--out", str(tmp_path / "p.json"))
    _one_line_error(code, 2, err, out, "image not found")
    code, err, out = _call(capsys, "train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--steps", "0")
    _one_line_error(code, 2, err, out, "--steps must be positive")
