"""``pipeline loop``'s bad-input table (issue 24): every case is exit 2 (as docs/loop.md says), exactly
one stderr line starting ``error:``, no traceback, and nothing created or changed. Grow it with every
new flag."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from blender_instseg.pipeline.__main__ import main
from tests.bad_input import assert_one_error_line, snapshot

CATS = [{"id": 1, "name": "cube"}]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loop_bad")
    coco = {"images": [], "annotations": [], "categories": CATS}
    for name, files in (("data", ("annotations_train.json", "annotations_val.json", "config.json")),
                        ("no_val", ("annotations_train.json", "config.json")),
                        ("no_config", ("annotations_train.json", "annotations_val.json"))):
        (root / name).mkdir()
        for f in files:
            (root / name / f).write_text(json.dumps(coco if f.startswith("annotations") else {"generator": {}}))
    (root / "model.pt").write_bytes(b"PK")
    (root / "a_file").write_text("x")
    (root / "run_corrupt").mkdir()
    (root / "run_corrupt" / "loop.json").write_text("{oops")
    (root / "run_other").mkdir()
    (root / "run_other" / "loop.json").write_text(json.dumps({"version": 1, "config": {"budget": 99}, "rounds": []}))
    return root


BASE = ["loop", "--data", "{ws}/data", "--run", "{tmp}/run", "--init", "{ws}/model.pt"]


def _with(flag: str, value: str) -> list[str]:
    argv = list(BASE)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
        return argv
    return argv + [flag, value]


CASES: dict[str, tuple[list[str], str]] = {
    "run is a file": (_with("--run", "{ws}/a_file"), "exists and is not a folder"),
    "run under a file": (_with("--run", "{ws}/a_file/run"), "which is a file"),
    "run empty": (_with("--run", ""), "--run is empty"),
    "rounds 0": (_with("--rounds", "0"), "--rounds must be >= 1"),
    "budget 0": (_with("--budget", "0"), "--budget must be >= 1"),
    "steps per round 0": (_with("--steps-per-round", "0"), "--steps-per-round must be >= 1"),
    "generator workers 0": (_with("--generator-workers", "0"), "--generator-workers must be >= 1"),
    "score threshold 5": (_with("--score-threshold", "5"), "--score-threshold must be in [0, 1]"),
    "score threshold nan": (_with("--score-threshold", "nan"), "--score-threshold must be in [0, 1]"),
    "image size 100": (_with("--image-size", "100"), "--image-size must be a positive multiple of 32"),
    "image size -32": (_with("--image-size", "-32"), "--image-size must be a positive multiple of 32"),
    "batch size 0": (_with("--batch-size", "0"), "--batch-size must be >= 1"),
    "lr nan": (_with("--lr", "nan"), "--lr must be >= 0"),
    "strategy unknown": (_with("--strategy", "best"), "invalid choice"),
    "rounds not a number": (_with("--rounds", "two"), "invalid int value"),
    "unknown flag": (BASE + ["--bogus"], "unrecognized arguments"),
    "data missing": (_with("--data", "{ws}/nope"), "dataset folder not found"),
    "data without val": (_with("--data", "{ws}/no_val"), "annotations_val.json"),
    "data without config": (_with("--data", "{ws}/no_config"), "has no config.json"),
    "heldout missing": (_with("--heldout", "{ws}/nope"), "held-out dataset not found"),
    "init missing": (_with("--init", "{ws}/nope.pt"), "starting checkpoint not found"),
    "generator cmd not JSON": (_with("--generator-cmd", "blender -b"), "--generator-cmd must be a JSON list"),
    "loop.json corrupt": (_with("--run", "{ws}/run_corrupt"), "not valid JSON"),
    "loop.json other settings": (_with("--run", "{ws}/run_other"), "made with other settings"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line_exit_2(name: str, ws: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    argv, needle = CASES[name]
    argv = [a.replace("{ws}", str(ws)).replace("{tmp}", str(tmp_path)) for a in argv]
    before = snapshot(ws, tmp_path)
    logging.getLogger().handlers.clear()
    code = main(argv)
    err = capfd.readouterr().err
    assert_one_error_line(code, err, needle)
    assert "Errno" not in err
    assert snapshot(ws, tmp_path) == before
