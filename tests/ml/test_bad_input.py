"""The ml CLIs' bad-input table (issue 24): every case is exit 2, exactly one stderr line starting
``error:``, no traceback, and nothing created or changed on disk. Grow it with every new flag.

Cases run in-process (``ml.__main__.main``, captured at the file-descriptor level, so C libraries'
output counts too); a few also run as real child processes, as Blender starts them."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from blender_instseg.ml.__main__ import main
from blender_instseg.ml.checkpoint import save_checkpoint
from blender_instseg.ml.models import architecture, build_model
from tests.bad_input import assert_one_error_line, snapshot
from tests.ml.conftest import run_cli
from tests.shapes import make_shapes_dataset

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace every case reads: a tiny dataset, damaged copies, good and bad checkpoints."""
    root = tmp_path_factory.mktemp("bad_input")
    data = root / "data"
    make_shapes_dataset(data, n_images=4, size=64, seed=5)
    coco = json.loads((data / "annotations.json").read_text())
    ckpt = root / "model.pt"
    cfg = architecture("solov2")[0](num_classes=len(coco["categories"]), fpn_channels=32)
    torch.manual_seed(0)
    save_checkpoint(ckpt, {"model": build_model(cfg.to_dict()).state_dict(), "model_config": cfg.to_dict(),
                           "categories": coco["categories"], "train_config": {"image_size": 64}})
    raw = ckpt.read_bytes()
    (root / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x10
    (root / "flipped.pt").write_bytes(bytes(flipped))
    (root / "random.pt").write_bytes(os.urandom(0) + bytes(range(256)) * 7)
    (root / "empty.pt").write_bytes(b"")
    torch.save({"format": "blender_instseg.model/2", "hook": io.BytesIO}, root / "pickle.pt")
    # a run folder whose last.pt is a model-only checkpoint (no optimizer: cannot resume)
    (root / "run_noopt").mkdir()
    shutil.copy(ckpt, root / "run_noopt" / "last.pt")
    (root / "run_junk").mkdir()
    (root / "run_junk" / "last.pt").write_bytes(b"junk")
    (root / "a_file").write_text("x")
    bad_png = root / "bad_png"
    shutil.copytree(data, bad_png)
    img = bad_png / "images" / "000001.png"
    img.write_bytes(img.read_bytes()[:80])
    (root / "not_json").mkdir()
    (root / "not_json" / "annotations.json").write_text("{oops")
    (root / "schema").mkdir()
    (root / "schema" / "annotations.json").write_text("[1, 2]")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return root


T = "{tmp}"
D = "{data}"
C = "{ws}/model.pt"
TRAIN = ["train", "--data", D, "--out", f"{T}/run", "--steps", "1", "--image-size", "64"]
PREDICT = ["predict", "--checkpoint", C, "--images", f"{D}/images", "--out", f"{T}/p.json"]
EVALUATE = ["evaluate", "--checkpoint", C, "--data", D, "--out", f"{T}/rep"]


def _with(base: list[str], flag: str, value: str) -> list[str]:
    argv = list(base)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


CASES: dict[str, tuple[list[str], str]] = {
    # train: arguments
    "train out empty": (_with(TRAIN, "--out", ""), "--out is empty"),
    "train data empty": (_with(TRAIN, "--data", ""), "--data is empty"),
    "train out is a file": (_with(TRAIN, "--out", "{ws}/a_file"), "not a folder"),
    "train out under a file": (_with(TRAIN, "--out", "{ws}/a_file/run"), "which is a file"),
    "train workers -1": (TRAIN + ["--workers", "-1"], "--workers must be >= 0"),
    "train image size -32": (_with(TRAIN, "--image-size", "-32"), "--image-size must be in"),
    "train image size 0": (_with(TRAIN, "--image-size", "0"), "--image-size must be in"),
    "train image size 100": (_with(TRAIN, "--image-size", "100"), "multiple of 32"),
    "train image size absurd": (_with(TRAIN, "--image-size", "1000000"), "--image-size must be in"),
    "train val fraction 2": (TRAIN + ["--val-fraction", "2"], "--val-fraction must be in [0, 1)"),
    "train val fraction 1": (TRAIN + ["--val-fraction", "1"], "--val-fraction must be in [0, 1)"),
    "train val fraction -0.1": (TRAIN + ["--val-fraction", "-0.1"], "--val-fraction must be in [0, 1)"),
    "train val fraction nan": (TRAIN + ["--val-fraction", "nan"], "--val-fraction must be in [0, 1)"),
    "train steps 0": (_with(TRAIN, "--steps", "0"), "--steps must be positive"),
    "train lr nan": (TRAIN + ["--lr", "nan"], "--lr must be >= 0"),
    "train lr -1": (TRAIN + ["--lr", "-1"], "--lr must be >= 0"),
    "train batch size 0": (TRAIN + ["--batch-size", "0"], "--batch-size must be positive"),
    "train ema decay 1": (TRAIN + ["--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    "train checkpoint every -1": (TRAIN + ["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    "train save minutes 0": (TRAIN + ["--save-minutes", "0"], "--save-minutes"),
    "train image size not a number": (_with(TRAIN, "--image-size", "abc"), "invalid int value"),
    "train unknown flag": (TRAIN + ["--bogus"], "unrecognized arguments"),
    "train unknown model": (TRAIN + ["--model", "nope"], "nope"),
    "train bad model config": (TRAIN + ["--model-config", "fpn_channels"], "K=V"),
    "train bad precision": (TRAIN + ["--precision", "fp8"], "fp8"),
    "train unknown device": (TRAIN + ["--device", "tpu"], "unknown device"),
    # train: files
    "train data missing": (_with(TRAIN, "--data", "{ws}/nope"), "dataset not found"),
    "train annotations not JSON": (_with(TRAIN, "--data", "{ws}/not_json"), "not valid JSON"),
    "train annotations wrong schema": (_with(TRAIN, "--data", "{ws}/schema"), "not a COCO instances file"),
    "train corrupt png": (_with(TRAIN, "--data", "{ws}/bad_png"), "cannot read image"),
    "train init missing": (TRAIN + ["--init", "{ws}/nope.pt"], "checkpoint not found"),
    "train init random": (TRAIN + ["--init", "{ws}/random.pt"], "is not a checkpoint of this project"),
    "train init empty file": (TRAIN + ["--init", "{ws}/empty.pt"], "is not a checkpoint of this project"),
    "train init truncated": (TRAIN + ["--init", "{ws}/truncated.pt"], "is not a checkpoint of this project"),
    "train init bit flipped": (TRAIN + ["--init", "{ws}/flipped.pt"], "corrupt checkpoint"),
    "train init pickle": (TRAIN + ["--init", "{ws}/pickle.pt"], "is not a checkpoint of this project"),
    "train init folder": (TRAIN + ["--init", "{ws}/bad_png"], "is not a checkpoint of this project"),
    "train init bundled other model": (TRAIN + ["--init", "bundled", "--model", "yolact"],
                                       "differs from the checkpoint's model"),
    "train init bundled model config": (TRAIN + ["--init", "bundled", "--model-config", "fpn_channels=32"],
                                        "cannot change the network"),
    "train resume nothing": (TRAIN + ["--resume"], "nothing to resume"),
    "train resume junk": (_with(TRAIN, "--out", "{ws}/run_junk") + ["--resume"], "is not a checkpoint of this project"),
    "train resume no state": (_with(TRAIN, "--out", "{ws}/run_noopt") + ["--resume"], "cannot resume"),
    "train new run on a run": (_with(TRAIN, "--out", "{ws}/run_noopt"), "already holds a run"),
    # predict
    "predict out empty": (_with(PREDICT, "--out", ""), "--out is empty"),
    "predict out is a folder": (_with(PREDICT, "--out", "{ws}/bad_png"), "is a folder"),
    "predict out under a file": (_with(PREDICT, "--out", "{ws}/a_file/p.json"), "which is a file"),
    "predict overlays empty": (PREDICT + ["--overlays", ""], "--overlays is empty"),
    "predict batch size 0": (PREDICT + ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    "predict workers -1": (PREDICT + ["--workers", "-1"], "--workers must be >= 0, got -1"),
    "predict overlays is a file": (PREDICT + ["--overlays", "{ws}/a_file"], "not a folder"),
    "predict checkpoint empty": (_with(PREDICT, "--checkpoint", ""), "--checkpoint is empty"),
    "predict checkpoint missing": (_with(PREDICT, "--checkpoint", "{ws}/nope.pt"), "checkpoint not found"),
    "predict checkpoint random": (_with(PREDICT, "--checkpoint", "{ws}/random.pt"), "is not a checkpoint"),
    "predict checkpoint truncated": (_with(PREDICT, "--checkpoint", "{ws}/truncated.pt"), "is not a checkpoint"),
    "predict checkpoint bit flipped": (_with(PREDICT, "--checkpoint", "{ws}/flipped.pt"), "corrupt checkpoint"),
    "predict checkpoint pickle": (_with(PREDICT, "--checkpoint", "{ws}/pickle.pt"), "is not a checkpoint"),
    "predict image size -32": (PREDICT + ["--image-size", "-32"], "--image-size must be in"),
    "predict image size 0": (PREDICT + ["--image-size", "0"], "--image-size must be in"),
    "predict image size absurd": (PREDICT + ["--image-size", "99999"], "--image-size must be in"),
    "predict score threshold 5": (PREDICT + ["--score-threshold", "5"], "--score-threshold must be in [0, 1]"),
    "predict score threshold nan": (PREDICT + ["--score-threshold", "nan"], "--score-threshold must be in [0, 1]"),
    "predict images empty": (_with(PREDICT, "--images", ""), "--images is empty"),
    "predict images missing": (_with(PREDICT, "--images", "{ws}/nope.png"), "image not found"),
    "predict corrupt image": (_with(PREDICT, "--images", "{ws}/bad.png"), "cannot read image"),
    "predict corrupt image in a folder": (_with(PREDICT, "--images", "{ws}/bad_png/images"), "cannot read image"),
    "predict unknown device": (PREDICT + ["--device", "tpu"], "unknown device"),
    "predict serve random checkpoint": (["predict", "--serve", "--checkpoint", "{ws}/random.pt"], "is not a checkpoint"),
    "predict serve score threshold nan": (["predict", "--serve", "--checkpoint", C, "--score-threshold", "nan"],
                                          "--score-threshold must be in [0, 1]"),
    # evaluate
    "evaluate out empty": (_with(EVALUATE, "--out", ""), "--out is empty"),
    "evaluate out is a file": (_with(EVALUATE, "--out", "{ws}/a_file"), "not a folder"),
    "evaluate data missing": (_with(EVALUATE, "--data", "{ws}/nope"), "dataset not found"),
    "evaluate split missing": (EVALUATE + ["--split", "nope"], "annotations_nope.json"),
    "evaluate checkpoint random": (_with(EVALUATE, "--checkpoint", "{ws}/random.pt"), "is not a checkpoint"),
    "evaluate checkpoint bit flipped": (_with(EVALUATE, "--checkpoint", "{ws}/flipped.pt"), "corrupt checkpoint"),
    "evaluate image size 0": (EVALUATE + ["--image-size", "0"], "--image-size must be in"),
    "evaluate score threshold 5": (EVALUATE + ["--score-threshold", "5"], "--score-threshold must be in [0, 1]"),
    "evaluate corrupt png": (_with(EVALUATE, "--data", "{ws}/bad_png"), "cannot read image"),
    "evaluate class-agnostic of a many-category checkpoint": (EVALUATE + ["--class-agnostic"],
                                                             "needs a checkpoint of one category"),
}


def _fill(argv: list[str], ws: Path, tmp: Path) -> list[str]:
    return [a.replace("{ws}", str(ws)).replace("{data}", str(ws / "data")).replace("{tmp}", str(tmp)) for a in argv]


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line_and_nothing_written(name: str, ws: Path, tmp_path: Path,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    argv, needle = CASES[name]
    before = snapshot(ws, tmp_path)
    logging.getLogger().handlers.clear()  # main() configures logging on this test's captured stderr
    code = main(_fill(argv, ws, tmp_path))
    err = capfd.readouterr().err
    assert_one_error_line(code, err, needle)
    assert snapshot(ws, tmp_path) == before


@pytest.mark.parametrize("name", ["train workers -1", "train corrupt png", "predict checkpoint random",
                                  "predict checkpoint bit flipped", "evaluate out empty", "predict corrupt image"])
def test_refused_in_a_child_process(name: str, ws: Path, tmp_path: Path) -> None:
    argv, needle = CASES[name]
    before = snapshot(ws, tmp_path)
    proc = run_cli(*_fill(argv, ws, tmp_path))
    assert_one_error_line(proc.returncode, proc.stderr, needle)
    assert snapshot(ws, tmp_path) == before
