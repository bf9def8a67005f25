"""The mining loop killed for real (SIGKILL to the loop and its running trainer, as a power cut would)
and rerun with the same command: it continues at the killed stage with the real children.

Masks-only 64x64 scenes, a 4-step base model, 2 new images and a 20-step round (no held-out set):
small enough to run in the suite, slow enough to be killed in the middle of training. The trainer's
step trace (INSTSEG_TRAIN_TRACE, ml/train.py) says when it is training, so the kill needs no timing.
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

pytestmark = [pytest.mark.bpy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GEN = ["--resolution", "64", "--masks-only", "--min-objects", "2", "--max-objects", "4", "--no-preview",
       "--no-depth", "--progress", "none"]
TRACE_ENV = "INSTSEG_TRAIN_TRACE"  # ml/train.py's TRACE_ENV (not imported: that module needs torch)
STEPS = 20


def run(*argv: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _steps(trace: Path) -> list[int]:
    path = trace / "rank0.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def test_a_killed_loop_continues_at_the_killed_stage(tmp_path: Path, torch_python: str) -> None:
    res = run("scripts/generate.py", "--out", str(tmp_path / "ds"), "--num-images", "6", "--seed", "1", *GEN,
              "--val-fraction", "0.34")
    assert res.returncode == 0, res.stderr[-500:]
    res = run("-m", "blender_instseg.ml", "train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "base"),
              "--steps", "4", "--image-size", "64", "--batch-size", "2", "--device", "cpu", python=torch_python)
    assert res.returncode == 0, res.stderr[-500:]

    trace = tmp_path / "trace"
    cmd = [sys.executable, "-m", "blender_instseg.pipeline", "loop", "--data", str(tmp_path / "ds"),
           "--run", str(tmp_path / "run"), "--init", str(tmp_path / "base" / "last.pt"), "--rounds", "1",
           "--budget", "2", "--per-seed", "1", "--steps-per-round", str(STEPS), "--device", "cpu",
           "--python-torch", torch_python, "--python-bpy", sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", TRACE_ENV: str(trace)}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
        while not _steps(trace):  # the round's trainer has made a step
            assert proc.poll() is None, proc.communicate()[1][-1500:]
            assert time.monotonic() < deadline, "the loop never reached training"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the loop and its trainer, without warning
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _steps(trace)
    assert 1 <= len(killed_at) < STEPS, "the kill came after training ended"
    state = json.loads((tmp_path / "run" / "loop.json").read_text())
    before = state["rounds"][0]
    assert before["status"] == "running" and set(before["stages"]) == {"evaluate", "plan", "generate", "combine"}
    assert not (tmp_path / "run" / "round_1" / "run" / "last.pt").exists()  # no checkpoint before the kill
    images = sorted(p.name for p in (tmp_path / "run" / "round_1" / "data" / "masks").iterdir())
    assert len(images) == 2

    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-800:]
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "done" and events[-1]["rounds"] == 1 and events[-1]["stopped"] is False
    rd = json.loads((tmp_path / "run" / "loop.json").read_text())["rounds"][0]
    assert rd["status"] == "done" and rd["images_added"] == 2
    for stage in ("evaluate", "plan", "generate", "combine"):  # finished stages are not redone
        assert rd["stages"][stage] == before["stages"][stage], stage
    assert sorted(p.name for p in (tmp_path / "run" / "round_1" / "data" / "masks").iterdir()) == images
    train = rd["stages"]["train"]
    assert "--init" in train["command"] and "--resume" not in train["command"]  # nothing saved: start over
    assert train["step"] == STEPS and Path(train["checkpoint"]).is_file()
    assert _steps(trace) == killed_at + list(range(1, STEPS + 1))  # the whole round trained once more
