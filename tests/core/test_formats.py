"""core.formats.FORMATS: the one table of optional output formats drives the generator's --export,
the config's export_<name> switches and the export commands of python -m blender_instseg.core; a new
row is offered, stored and written everywhere with no other change."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blender_instseg.core import formats
from blender_instseg.core.__main__ import COMMANDS
from blender_instseg.core.formats import FORMATS, Format, dataset
from blender_instseg.core.genconfig import GeneratorConfig
from blender_instseg.generator import cli, resume
from tests.core.coco_fixtures import make_record_dataset

ROOT = Path(__file__).resolve().parents[2]

#: a format module as a new one would be written: write() for the generator, a command for the core CLI
FAKE_MODULE = '''
import argparse
from pathlib import Path


def write(dataset_root: Path) -> dict[str, Path]:
    images = len(__import__("json").loads((dataset_root / "annotations.json").read_text())["images"])
    path = dataset_root / "fake.txt"
    path.write_text(f"{images} images\\n")
    return {"fake": path}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path)


def run(args: argparse.Namespace) -> int:
    print(f"fake: {write(args.dataset)['fake']}")
    return 0
'''

FAKE = Format("fake_format", "fake.txt", command="export-fake", command_help="write fake.txt")


@pytest.fixture()
def fake_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fourth row of FORMATS whose module is a file in tmp_path/mods; returns that folder."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "fake_format.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.setitem(FORMATS, "fake", FAKE)
    return mods


@pytest.fixture()
def merged(tmp_path: Path) -> Path:
    root = make_record_dataset(tmp_path / "ds", range(2), splits=False)
    dataset.merge_dataset([root])
    return root


def test_every_row_has_a_writer_and_its_command_is_the_core_cli() -> None:
    assert list(FORMATS) == ["yolo", "semantic", "panoptic"]
    for name, fmt in FORMATS.items():
        module = importlib.import_module(fmt.module)
        assert callable(module.write), name
        if fmt.command is not None:
            assert callable(module.configure_parser) and callable(module.run), name
            assert COMMANDS[fmt.command] == (fmt.module, fmt.command_help)
    exports = [c for c in COMMANDS if c.startswith("export-")]
    assert exports == [f.command for f in FORMATS.values() if f.command is not None] == ["export-yolo",
                                                                                           "export-panoptic"]
    assert list(COMMANDS) == ["validate", "merge", "export-yolo", "export-panoptic", "evaluate"]


def test_the_generator_offers_the_table() -> None:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if a.dest == "export"]
    assert tuple(action.choices or ()) == ("yolo", "semantic", "panoptic")
    assert action.help == ("also write: yolo (ultralytics YOLO-seg labels/), semantic (semantic/ category maps), "
                           "panoptic (COCO panoptic/ + panoptic*.json); any of them")
    with pytest.raises(cli.UsageError, match="invalid choice"):
        parser.parse_args(["--out", "x", "--export", "coco"])


def test_config_switches_are_the_stored_keys_of_existing_datasets(tmp_path: Path) -> None:
    """config.json of datasets written before (export_<name> switches) loads, and is written back
    key for key, in the same order."""
    stored = {"mask_format": "polygon", "val_fraction": 0.25, "export_yolo": True, "export_semantic": False,
              "export_panoptic": True, "preview": False}
    cfg = GeneratorConfig.from_dict({"output": stored}).validate()
    assert cfg.output.exports == ["yolo", "panoptic"]
    assert list(cfg.to_dict()["output"].items()) == list(stored.items())
    assert GeneratorConfig.from_dict({"output": {"export_semantic": True}}).output.exports == ["semantic"]
    assert GeneratorConfig().to_dict()["output"] == {"mask_format": "rle", "val_fraction": 0.0, "export_yolo": False,
                                                     "export_semantic": False, "export_panoptic": False,
                                                     "preview": True}
    for bad, fragment in [({"export_coco": True}, "unknown key config.output.export_coco (known: mask_format, "
                                                  "val_fraction, export_yolo, export_semantic, export_panoptic, "
                                                  "preview)"),
                          ({"exports": ["yolo"]}, "unknown key config.output.exports"),
                          ({"export_yolo": 1}, "config.output.export_yolo must be true or false, got 1")]:
        with pytest.raises(ValueError) as info:
            GeneratorConfig.from_dict({"output": bad})
        assert fragment in str(info.value)
    cfg = GeneratorConfig()
    cfg.output.exports = ["coco"]
    with pytest.raises(ValueError, match="unknown output format 'coco'"):
        cfg.validate()


def test_a_new_row_is_offered_stored_and_written(fake_row: Path, merged: Path, tmp_path: Path) -> None:
    # the generator's flags and config
    args = cli.build_parser().parse_args(["--out", str(tmp_path / "out"), "--export", "fake", "yolo"])
    cfg = cli.resolve_config(args)
    assert cfg.output.exports == ["yolo", "fake"]  # table order, whatever the flag order
    stored = cfg.to_dict()
    assert stored["output"]["export_fake"] is True and stored["output"]["export_semantic"] is False
    assert GeneratorConfig.from_dict(json.loads(json.dumps(stored))) == cfg
    # turning the new format on keeps a dataset's identity: a resume may add it
    conf = {"generator": GeneratorConfig().to_dict(), "seed": 1, "num_images": 2, "categories": cfg.coco_categories()}
    resume.write_or_check_config(tmp_path / "out", conf)
    resume.write_or_check_config(tmp_path / "out", {**conf, "generator": stored}, write=False)
    # what the generator's finish_dataset runs after the merge
    written = formats.write(merged, ["fake"])
    assert written == {"fake": merged / "fake.txt"} and (merged / "fake.txt").read_text() == "2 images\n"
    with pytest.raises(ValueError, match="unknown output format 'nope'"):
        formats.write(merged, ["nope"])


def test_a_new_rows_command_is_in_the_core_cli(fake_row: Path, merged: Path) -> None:
    """The dispatcher reads its export commands from the table when it starts."""
    code = ("import sys; from blender_instseg.core import formats; "
            "formats.FORMATS['fake'] = formats.Format('fake_format', 'fake.txt', command='export-fake', "
            "command_help='write fake.txt'); "
            "from blender_instseg.core.__main__ import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_row), str(ROOT)])}
    res = subprocess.run([sys.executable, "-c", code, "export-fake", str(merged)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"fake: {merged / 'fake.txt'}"
    helped = subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=env)
    assert helped.returncode == 0 and "export-fake" in helped.stdout and "write fake.txt" in helped.stdout
