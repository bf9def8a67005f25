"""Bad input to ``python -m blender_instseg.core``: one ``error:`` line, exit 2, nothing written.

Table-driven: every row is a command line that must be refused before anything is created or
changed. Add a row with every new flag.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from blender_instseg.core.__main__ import main as core_main
from blender_instseg.core.formats.dataset import merge_dataset, write_dataset_config
from tests.core.coco_fixtures import make_record_dataset
from tests.bad_input import assert_one_error_line, snapshot

# {ds}: a merged dataset; {other}: a dataset of another seed; {gt}/{pred}: its COCO file and a valid
# predictions file; {nan}: predictions with a NaN score; {text}: a file that is not JSON; {out}: a new folder
CASES: list[tuple[str, list[str]]] = [
    ("no command", []),
    ("unknown command", ["nope"]),
    ("validate empty path", ["validate", ""]),
    ("validate missing folder", ["validate", "{tmp}/missing"]),
    ("validate max-errors 0", ["validate", "{ds}", "--max-errors", "0"]),
    ("merge empty path", ["merge", ""]),
    ("merge empty --out", ["merge", "{ds}", "--out", ""]),
    ("merge missing folder", ["merge", "{tmp}/missing", "--out", "{out}"]),
    ("merge other seed", ["merge", "{ds}", "{other}", "--out", "{out}"]),
    ("merge bad mask format", ["merge", "{ds}", "--mask-format", "bitmap"]),
    ("export-yolo empty path", ["export-yolo", ""]),
    ("export-yolo empty --out", ["export-yolo", "{ds}", "--out", ""]),
    ("export-yolo missing folder", ["export-yolo", "{tmp}/missing", "--out", "{out}"]),
    ("export-panoptic empty path", ["export-panoptic", ""]),
    ("export-panoptic missing folder", ["export-panoptic", "{tmp}/missing"]),
    ("evaluate empty --out", ["evaluate", "--gt", "{gt}", "--pred", "{pred}", "--out", ""]),
    ("evaluate empty --gt", ["evaluate", "--gt", "", "--pred", "{pred}", "--out", "{out}"]),
    ("evaluate missing --gt", ["evaluate", "--gt", "{tmp}/none.json", "--pred", "{pred}", "--out", "{out}"]),
    ("evaluate --gt is a folder", ["evaluate", "--gt", "{ds}", "--pred", "{pred}", "--out", "{out}"]),
    ("evaluate --pred not JSON", ["evaluate", "--gt", "{gt}", "--pred", "{text}", "--out", "{out}"]),
    ("evaluate NaN score", ["evaluate", "--gt", "{gt}", "--pred", "{nan}", "--out", "{out}"]),
    ("evaluate --out is a file", ["evaluate", "--gt", "{gt}", "--pred", "{pred}", "--out", "{text}"]),
    ("evaluate threshold NaN", ["evaluate", "--gt", "{gt}", "--pred", "{pred}", "--out", "{out}",
                                "--score-threshold", "nan"]),
    ("evaluate dilation 0", ["evaluate", "--gt", "{gt}", "--pred", "{pred}", "--out", "{out}",
                             "--dilation-ratio", "0"]),
    ("evaluate worst -1", ["evaluate", "--gt", "{gt}", "--pred", "{pred}", "--out", "{out}", "--worst", "-1"]),
    ("evaluate worst not a number", ["evaluate", "--gt", "{gt}", "--pred", "{pred}", "--out", "{out}",
                                     "--worst", "ten"]),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input_core")
    ds = make_record_dataset(root / "ds", range(4), size=32)
    write_dataset_config(ds, {"categories": json.loads((ds / "config.json").read_text())["categories"],
                              "seed": 1, "version": "test"})
    merge_dataset([ds])
    other = make_record_dataset(root / "other", range(4, 6), size=32)
    write_dataset_config(other, {"categories": json.loads((other / "config.json").read_text())["categories"],
                                 "seed": 2, "version": "test"})
    gt = ds / "annotations.json"
    anns = json.loads(gt.read_text())["annotations"]
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
              "segmentation": a["segmentation"]} for a in anns]
    (root / "pred.json").write_text(json.dumps(preds))
    preds[0]["score"] = math.nan
    (root / "nan.json").write_text(json.dumps(preds))
    (root / "text.txt").write_text("not json\n")
    return {"ds": str(ds), "other": str(other), "gt": str(gt), "pred": str(root / "pred.json"),
            "nan": str(root / "nan.json"), "text": str(root / "text.txt"), "root": str(root)}


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_one_line_and_nothing_written(argv: list[str], files: dict[str, str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # an empty path read as "." would write here
    values = {**files, "tmp": str(tmp_path), "out": str(tmp_path / "out")}
    args = [a.format(**values) for a in argv]
    before = snapshot(Path(files["root"]), tmp_path)
    code = core_main(args)
    err = capfd.readouterr().err
    assert_one_error_line(code, err)
    assert snapshot(Path(files["root"]), tmp_path) == before
