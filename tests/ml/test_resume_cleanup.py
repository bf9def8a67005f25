"""A resume after ``kill -9``: the atomic writer's partial files are removed (only names it makes),
and events.jsonl reads as one history (the redone steps' events dropped, a torn line too)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.ml.conftest import run_cli

pytestmark = pytest.mark.torch


def test_resume_after_a_kill_cleans_temp_files_and_rewinds_events(trained_run: Path, shapes_root: Path,
                                                                   tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    saved_step = 12  # trained_run's last.pt
    # what a kill -9 at step 15 leaves: partial checkpoints, events of steps after last.pt, a torn line
    partials = [run / ".last.pt.k2j4h6g8.tmp", run / ".checkpoint-000015.pt.a1b2c3d4.tmp", run / ".x.png.77.link.tmp"]
    for p in partials:
        p.write_bytes(b"\0" * 1000)
    keep = [run / ".keep.tmp", run / "notes.tmp", run / ".last.pt.SHOUTY12.tmp"]
    for p in keep:
        p.write_text("mine")
    with open(run / "events.jsonl", "a", encoding="utf-8") as fh:
        for step in (13, 14, 15):
            fh.write(json.dumps({"event": "progress", "step": step, "total": 20, "loss": 1.0}) + "\n")
        fh.write(json.dumps({"event": "checkpoint", "path": "x", "step": 15}) + "\n")
        fh.write('{"event":"progress","st')
    proc = run_cli("train", "--data", str(shapes_root), "--out", str(run), "--steps", "16", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in partials)
    assert all(p.read_text() == "mine" for p in keep)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    progress = [e["step"] for e in events if e["event"] == "progress"]
    assert progress == sorted(set(progress)) and progress[-1] == 16, progress
    resumed = [e for e in events if e.get("resumed_from_step") is not None]
    assert len(resumed) == 1 and resumed[0]["resumed_from_step"] == saved_step and resumed[0]["dropped_events"] == 5
    # before the resume marker nothing is past the checkpoint; after it everything is the new run's
    at = events.index(resumed[0])
    assert all(e.get("step", 0) <= saved_step for e in events[:at])
    assert [e["step"] for e in events[at:] if e["event"] == "progress"][0] == saved_step + 1
