"""scripts/generate.py as a real child process: both invocation styles, --workers, kill -9 + resume, stop.

Everything runs masks-only at 64x64 so each child costs about one bpy start-up (~1-2 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_instseg.core import protocol
from blender_instseg.core.formats import dataset

pytestmark = pytest.mark.bpy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "generate.py"
SMALL = ["--resolution", "64", "--masks-only", "--min-objects", "3", "--max-objects", "8", "--no-preview"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(args: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180, **kw)


def test_help_works_with_and_without_double_dash() -> None:
    for args in (["--help"], ["--", "--help"]):
        res = run(args)
        assert res.returncode == 0, res.stderr
        assert "usage: generate.py" in res.stdout and "--masks-only" in res.stdout and "--workers" in res.stdout


def test_both_styles_same_dataset_and_jsonl_events(tmp_path: Path) -> None:
    args = ["--num-images", "2", "--seed", "5", *SMALL]
    a = run(["--out", str(tmp_path / "a"), *args, "--progress", "jsonl"])
    b = run(["--", "--out", str(tmp_path / "b"), *args, "--progress", "none"])
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    events = [protocol.parse_line(line) for line in a.stdout.splitlines()]
    assert [e for e in events if e.event == "log"] == []  # stdout carries protocol lines only
    progress = [e for e in events if e.event == "progress"]
    assert [e.get("step") for e in progress] == [0, 1, 2] and progress[-1].get("total") == 2
    done = [e for e in events if e.event == "done"]
    assert len(done) == 1 and done[0].get("images") == 2 and done[0].get("out") == str(tmp_path / "a")
    assert done[0].get("seconds") > 0 and done[0].get("cpu_seconds") > 0  # the render loop's wall and CPU time


def test_bad_argument_in_child_is_one_line_exit_2(tmp_path: Path) -> None:
    res = run(["--out", str(tmp_path / "x"), "--min-objects", "5", "--max-objects", "1", "--progress", "jsonl"])
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "min_count (5) > objects.max_count (1)" in lines[0]
    assert any(protocol.parse_line(ln).event == "error" for ln in res.stdout.splitlines())
    assert not (tmp_path / "x").exists()


def test_workers_equal_single_process(tmp_path: Path) -> None:
    args = ["--num-images", "6", "--seed", "3", *SMALL, "--progress", "none"]
    single = run(["--out", str(tmp_path / "single"), *args])
    assert single.returncode == 0, single.stderr
    multi = run(["--out", str(tmp_path / "multi"), *args[:-2], "--workers", "2", "--progress", "jsonl"])
    assert multi.returncode == 0, multi.stderr
    assert tree(tmp_path / "multi") == tree(tmp_path / "single")
    # the parent relays its children's progress as its own events: one step per image, then done
    events = [protocol.parse_line(line) for line in multi.stdout.splitlines()]
    steps = [e.get("step") for e in events if e.event == "progress"]
    assert steps == list(range(7))
    assert sorted(e.get("index") for e in events if e.event == "progress" and e.get("step")) == list(range(6))
    assert [e.event for e in events if e.event in ("done", "error")] == ["done"]
    assert next(e for e in events if e.event == "done").get("cpu_seconds") is None  # the workers' CPU is not ours


def test_kill_9_then_rerun_resumes_to_identical_dataset(tmp_path: Path) -> None:
    args = ["--num-images", "30", "--seed", "8", *SMALL, "--progress", "none"]
    ref = run(["--out", str(tmp_path / "ref"), *args])
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "records").glob("*.json"))) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = dataset.completed_indices(out)
    assert 3 <= len(partial) < 30
    # what a kill during a write leaves (the atomic writers' temp names), and a hidden file of the user's
    (out / "images" / ".000029.png.k3x_9q0a.tmp").write_bytes(b"partial")
    (out / "records" / ".000029.json.12345.link.tmp").write_bytes(b"partial")
    (out / ".notes.tmp").write_bytes(b"mine")
    rerun = run(["--out", str(out), *args])
    assert rerun.returncode == 0, rerun.stderr
    got = tree(out)
    assert got.pop(".notes.tmp") == b"mine"
    assert got == tree(tmp_path / "ref")  # the resume removed its temp files: nothing else differs


def test_stop_line_on_stdin_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--out", str(out), "--num-images", "200", "--seed", "1",
                             *SMALL, "--progress", "jsonl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    events = []
    for line in proc.stdout:
        ev = protocol.parse_line(line)
        events.append(ev)
        if ev.event == "progress" and (ev.get("step") or 0) >= 2:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    events += [protocol.parse_line(ln) for ln in rest.splitlines()]
    done = [e for e in events if e.event == "done"]
    assert len(done) == 1 and done[0].get("stopped") is True
    n = len(dataset.completed_indices(out))
    assert 2 <= n < 200
    assert not (out / "annotations.json").exists()
    assert json.loads((out / "config.json").read_text())["num_images"] == 200


def test_worker_failure_is_one_line_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "w"
    (out / "images" / "000003.png").mkdir(parents=True)  # image 3 cannot be written: its worker fails
    res = run(["--out", str(out), "--num-images", "4", "--seed", "2", *SMALL, "--workers", "2", "--progress", "none"])
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "worker 1" in errors[0] and "000003.png" in errors[0]
    assert dataset.completed_indices(out) >= {0, 2}  # the healthy worker finished its share
    assert 3 not in dataset.completed_indices(out) and not (out / "annotations.json").exists()
