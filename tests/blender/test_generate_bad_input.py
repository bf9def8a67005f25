"""Bad input to scripts/generate.py: one ``error:`` line, exit 2, nothing created or changed on disk.

Table-driven and in-process (``generate.main``), so a row costs milliseconds: every row is a
command line that must be refused before the first write. Add a row with every new flag.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402,F401

from blender_instseg.blender.generate import main as generate  # noqa: E402
from blender_instseg.core.folder_lock import FolderLock  # noqa: E402
from tests.bad_input import assert_one_error_line, snapshot  # noqa: E402

TINY = ["--resolution", "16", "--masks-only", "--min-objects", "1", "--max-objects", "2", "--no-preview",
        "--progress", "none", "--no-depth"]

# {ds}: a finished dataset (seed 1, TINY, 1 image); {file}: a plain file; {empty}: an empty folder;
# {bad_toml} / {unknown_key} / {wrong_type}: broken configs; {plan_*}: variant plans; {out}: a new folder
CASES: list[tuple[str, list[str]]] = [
    ("no --out", ["--num-images", "1"]),
    ("empty --out", ["--out", ""]),
    ("--out is a file", ["--out", "{file}"]),
    ("--num-images 0", ["--out", "{out}", "--num-images", "0"]),
    ("--num-images negative", ["--out", "{out}", "--num-images", "-3"]),
    ("--num-images huge", ["--out", "{out}", "--num-images", "1000000000000"]),
    ("--num-images not a number", ["--out", "{out}", "--num-images", "ten"]),
    ("--frames 0", ["--out", "{out}", "--frames", "0"]),
    ("--num-images not a multiple of --frames", ["--out", "{out}", "--num-images", "5", "--frames", "2"]),
    ("--frames with --variants-of", ["--out", "{out}", "--frames", "2", "--variants-of", "{plan_twice}"]),
    ("--workers 0", ["--out", "{out}", "--workers", "0"]),
    ("--threads negative", ["--out", "{out}", "--threads", "-1"]),
    ("--shard alone", ["--out", "{out}", "--shard", "0"]),
    ("--shard outside", ["--out", "{out}", "--shard", "2", "--num-shards", "2"]),
    ("--num-shards 0", ["--out", "{out}", "--shard", "0", "--num-shards", "0"]),
    ("--only-index outside", ["--out", "{out}", "--num-images", "2", "--only-index", "2"]),
    ("--only-index negative", ["--out", "{out}", "--only-index", "-1"]),
    ("--resolution 0", ["--out", "{out}", "--resolution", "0"]),
    ("--resolution words", ["--out", "{out}", "--resolution", "big"]),
    ("--samples 0", ["--out", "{out}", "--samples", "0"]),
    ("min > max objects", ["--out", "{out}", "--min-objects", "5", "--max-objects", "2"]),
    ("--val-fraction 1.5", ["--out", "{out}", "--val-fraction", "1.5"]),
    ("--val-fraction nan", ["--out", "{out}", "--val-fraction", "nan"]),
    ("unknown --export", ["--out", "{out}", "--export", "pascal"]),
    ("unknown --device", ["--out", "{out}", "--device", "tpu"]),
    ("unknown flag", ["--out", "{out}", "--colour", "red"]),
    ("empty --config", ["--out", "{out}", "--config", ""]),
    ("missing --config", ["--out", "{out}", "--config", "{tmp}/none.toml"]),
    ("--config not TOML", ["--out", "{out}", "--config", "{bad_toml}"]),
    ("--config unknown key", ["--out", "{out}", "--config", "{unknown_key}"]),
    ("--config wrong type", ["--out", "{out}", "--config", "{wrong_type}"]),
    ("missing --assets", ["--out", "{out}", "--assets", "{tmp}/none"]),
    ("empty --assets", ["--out", "{out}", "--assets", "{empty}"]),
    ("--assets and --blend", ["--out", "{out}", "--assets", "{empty}", "--blend", "{file}"]),
    ("missing --blend", ["--out", "{out}", "--blend", "{tmp}/none.blend"]),
    ("missing --distractors", ["--out", "{out}", "--distractors", "{tmp}/none"]),
    ("--max-triangles negative", ["--out", "{out}", "--max-triangles", "-1"]),
    ("--max-triangles not a number", ["--out", "{out}", "--max-triangles", "many"]),
    ("--config max_triangles a word", ["--out", "{out}", "--config", "{many_triangles}"]),
    ("empty --hdri", ["--out", "{out}", "--hdri", ""]),
    ("missing --hdri", ["--out", "{out}", "--hdri", "{tmp}/none"]),
    ("--hdri without an image", ["--out", "{out}", "--hdri", "{empty}"]),
    ("empty --backgrounds", ["--out", "{out}", "--backgrounds", ""]),
    ("--backgrounds without a photo", ["--out", "{out}", "--backgrounds", "{empty}"]),
    ("empty --textures", ["--out", "{out}", "--textures", ""]),
    ("--textures without a texture set", ["--out", "{out}", "--textures", "{empty}"]),
    ("missing --variants-of", ["--out", "{out}", "--variants-of", "{tmp}/none.json"]),
    ("--variants-of not JSON", ["--out", "{out}", "--variants-of", "{file}"]),
    ("--variants-of huge plan", ["--out", "{out}", "--variants-of", "{plan_huge}"]),
    ("--variants-of repeated variant", ["--out", "{out}", "--variants-of", "{plan_twice}"]),
    ("--merge missing folder", ["--out", "{out}", "--merge", "{tmp}/none"]),
    ("--merge with --variants-of", ["--out", "{out}", "--merge", "{ds}", "--variants-of", "{plan_twice}"]),
    ("resume with another seed", ["--out", "{ds}", "--num-images", "1", "--seed", "2", *TINY]),
    ("resume with other settings", ["--out", "{ds}", "--num-images", "1", "--seed", "1", *TINY[:-1]]),
    ("folder held by another run", ["--out", "{locked}", "--num-images", "1", *TINY]),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input_generate")
    assert generate(["--out", str(root / "ds"), "--num-images", "1", "--seed", "1", *TINY]) == 0
    (root / "file.txt").write_text("not a folder, not JSON\n")
    (root / "empty").mkdir()
    (root / "locked").mkdir()
    (root / "bad.toml").write_text("[objects\nmin_count = 1\n")
    (root / "unknown.toml").write_text("[objects]\nmin_cout = 1\n")
    (root / "wrong.toml").write_text("[render]\nsamples = \"many\"\n")
    (root / "triangles.toml").write_text("[objects]\nmax_triangles = \"many\"\n")
    (root / "plan_huge.json").write_text(json.dumps([{"seed": 1, "count": 10**12}]))
    (root / "plan_twice.json").write_text(json.dumps([{"seed": 1, "count": 2}, {"seed": 1, "count": 1}]))
    return {"root": str(root), "ds": str(root / "ds"), "file": str(root / "file.txt"), "empty": str(root / "empty"),
            "locked": str(root / "locked"), "bad_toml": str(root / "bad.toml"),
            "unknown_key": str(root / "unknown.toml"), "wrong_type": str(root / "wrong.toml"),
            "many_triangles": str(root / "triangles.toml"),
            "plan_huge": str(root / "plan_huge.json"), "plan_twice": str(root / "plan_twice.json")}


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_one_line_and_nothing_written(argv: list[str], files: dict[str, str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # an empty path read as "." would write here
    values = {**files, "tmp": str(tmp_path), "out": str(tmp_path / "out")}
    args = [a.format(**values) for a in argv]
    with FolderLock(files["locked"]):  # another generator's hold on {locked}
        before = snapshot(Path(files["root"]), tmp_path)
        code = generate(args)
        after = snapshot(Path(files["root"]), tmp_path)
    err = capfd.readouterr().err
    assert_one_error_line(code, err)
    assert after == before
