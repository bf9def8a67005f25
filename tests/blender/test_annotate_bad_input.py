"""Bad input to scripts/annotate_scene.py: one ``error:`` line, exit 2, nothing created or changed on disk.

Table-driven and in-process (``annotate_scene.main``) for the flags, which are all checked before
a file is opened; the refusals that need the scene itself (no camera, a frame range outside the
scene's, a file that is not a .blend, an unknown category) run as child processes in
tests/blender/test_annotate_scene.py. Add a row with every new flag.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402,F401

from blender_instseg.blender.annotate_scene import main as annotate  # noqa: E402
from tests.bad_input import assert_one_error_line, snapshot  # noqa: E402

# {blend}: a file that exists (only its name is read before the checks fail); {file}: a plain file
CASES: list[tuple[str, list[str], str]] = [
    ("no --out", ["--blend", "{blend}"], "--out is required"),
    ("empty --out", ["--blend", "{blend}", "--out", ""], "must not be empty"),
    ("--out is a file", ["--blend", "{blend}", "--out", "{file}"], "not a folder"),
    ("empty --blend", ["--blend", "", "--out", "{out}"], "must not be empty"),
    ("missing --blend", ["--blend", "{tmp}/none.blend", "--out", "{out}"], "not found"),
    ("--frames words", ["--blend", "{blend}", "--out", "{out}", "--frames", "all"], "--frames must be A-B"),
    ("--frames backwards", ["--blend", "{blend}", "--out", "{out}", "--frames", "9-2"], "before the first"),
    ("--frame-step 0", ["--blend", "{blend}", "--out", "{out}", "--frame-step", "0"], "--frame-step must be >= 1"),
    ("--samples 0", ["--blend", "{blend}", "--out", "{out}", "--samples", "0"], "--samples must be >= 1"),
    ("--threads negative", ["--blend", "{blend}", "--out", "{out}", "--threads", "-2"], "--threads must be >= 0"),
    ("--categories twice", ["--blend", "{blend}", "--out", "{out}", "--categories", "cup", "cup"], "twice"),
    ("--categories empty name", ["--blend", "{blend}", "--out", "{out}", "--categories", " "], "empty name"),
    ("--category-property empty", ["--blend", "{blend}", "--out", "{out}", "--category-property", ""],
     "--category-property must name"),
    ("unknown --uncategorized", ["--blend", "{blend}", "--out", "{out}", "--uncategorized", "drop"], "invalid choice"),
    ("unknown --export", ["--blend", "{blend}", "--out", "{out}", "--export", "voc"], "invalid choice"),
    ("unknown --device", ["--blend", "{blend}", "--out", "{out}", "--device", "tpu"], "invalid choice"),
    ("unknown flag", ["--blend", "{blend}", "--out", "{out}", "--fps", "24"], "unrecognized arguments"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input_annotate")
    (root / "shot.blend").write_bytes(b"")  # never opened: every row fails before
    (root / "file.txt").write_text("not a folder\n")
    return {"root": str(root), "blend": str(root / "shot.blend"), "file": str(root / "file.txt")}


@pytest.mark.parametrize(("argv", "needle"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_one_line_and_nothing_written(argv: list[str], needle: str, files: dict[str, str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # an empty path read as "." would write here
    args = [a.format(**files, tmp=str(tmp_path), out=str(tmp_path / "out")) for a in argv]
    before = snapshot(Path(files["root"]), tmp_path)
    code = annotate(args)
    assert_one_error_line(code, capfd.readouterr().err, needle)
    assert snapshot(Path(files["root"]), tmp_path) == before
