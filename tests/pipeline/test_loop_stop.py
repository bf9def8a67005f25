"""Stopping the mining loop (``python -m blender_instseg.pipeline loop``): a "stop" line on its stdin,
SIGINT or SIGTERM stop the running stage cleanly and a rerun continues it; a second signal terminates
a stage that ignores the first.

The stages are real child processes of a small stand-in (STAND_IN below) that writes what each real
child would write and notes on a log what it was asked to do; the loop, its signal handling and
``run_stage`` are the real ones. The real children are stopped and killed in test_loop_kill.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.pipeline.test_loop_state import CATS, coco

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = """
    import json, os, signal, sys, threading
    from pathlib import Path

    argv = sys.argv[1:]
    if "blender_instseg.ml" in argv:  # <python> -u -m blender_instseg.ml COMMAND ARGS
        i = argv.index("blender_instseg.ml")
        stage, args = argv[i + 1], argv[i + 2:]
    else:  # <python> -u scripts/generate.py -- ARGS
        stage, args = "generate", argv[argv.index("--") + 1:]

    def arg(flag):
        return args[args.index(flag) + 1]

    def note(text):
        with open(os.environ["STAND_IN_LOG"], "a") as fh:
            fh.write(f"{stage}: {text}\\n")

    def emit(event, **data):
        print(json.dumps({"event": event, **data}), flush=True)

    out = Path(arg("--out"))
    out.mkdir(parents=True, exist_ok=True)
    if stage == "evaluate":
        note("run")
        (out / "metrics.json").write_text(json.dumps({"segm": {"AP": 0.1}}))
        (out / "predictions.json").write_text("[]")
        emit("done", predictions=str(out / "predictions.json"))
    elif stage == "generate":
        note("run")
        n = int(os.environ["STAND_IN_IMAGES"])
        images = [{"id": i + 1, "file_name": f"images/{i:06d}.png", "width": 16, "height": 16, "seed": 9000 + i,
                   "index": i} for i in range(n)]
        (out / "annotations.json").write_text(json.dumps({"images": images, "annotations": [],
                                                          "categories": [{"id": 1, "name": "cube"}]}))
        emit("done", images=n)
    elif stage == "train":
        # STAND_IN_TRAIN: ok (finishes at once), stoppable (until "stop"), stubborn (ignores "stop")
        mode = os.environ["STAND_IN_TRAIN"]
        stop = threading.Event()

        def on_term(signum, frame):
            note("SIGTERM")
            sys.exit(143)

        signal.signal(signal.SIGTERM, on_term)

        def watch():
            for line in sys.stdin:
                if line.strip() == "stop":
                    note("stop ignored" if mode == "stubborn" else "stop")
                    if mode != "stubborn":
                        stop.set()
            os._exit(3)  # end of input: the loop is gone, so do not linger as an orphan


        threading.Thread(target=watch, daemon=True).start()
        note(("resume" if "--resume" in args else "start") + f" pid {os.getpid()}")
        steps = int(arg("--steps"))
        emit("progress", step=1, total=steps, loss=1.0)
        if mode == "ok":
            stop.set()
        while not stop.wait(0.02):
            pass
        (out / "last.pt").write_bytes(b"weights")
        emit("done", checkpoint=str(out / "last.pt"), step=steps, stopped=mode != "ok")
"""


@pytest.fixture()
def loop_args(tmp_path: Path) -> list[str]:
    """A dataset with train and val splits, a starting checkpoint and the stand-in as both Pythons."""
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "config.json").write_text(json.dumps({"seed": 3, "categories": CATS, "generator": {}}))
    (ds / "annotations_train.json").write_text(json.dumps(coco(4, 100)))
    (ds / "annotations_val.json").write_text(json.dumps(coco(3, 200)))
    base = tmp_path / "base"
    base.mkdir()
    (base / "last.pt").write_bytes(b"start")
    script = tmp_path / "stand_in.py"
    script.write_text(textwrap.dedent(STAND_IN))
    python = tmp_path / "stand-in-python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return ["loop", "--data", str(ds), "--run", str(tmp_path / "run"), "--init", str(base / "last.pt"),
            "--budget", "3", "--per-seed", "2", "--steps-per-round", "5", "--image-size", "64",
            "--python-torch", str(python), "--python-bpy", str(python)]


def _env(tmp_path: Path, train: str) -> dict[str, str]:
    return {**os.environ, "STAND_IN_LOG": str(tmp_path / "log.txt"), "STAND_IN_IMAGES": "3", "STAND_IN_TRAIN": train}


def _log(tmp_path: Path) -> list[str]:
    path = tmp_path / "log.txt"
    return [line.split(" pid ")[0] for line in path.read_text().splitlines()] if path.is_file() else []


def _wait_for(tmp_path: Path, entry: str, alive: subprocess.Popen | None = None,
              give_up: threading.Event | None = None) -> bool:
    """Until the stand-in's log holds ``entry`` (True), or ``give_up`` is set (False)."""
    deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
    while entry not in _log(tmp_path):
        if give_up is not None and give_up.is_set():
            return False
        assert alive is None or alive.poll() is None, alive.communicate()[1][-1500:]
        assert time.monotonic() < deadline, f"no {entry!r} in {_log(tmp_path)}"
        time.sleep(0.02)
    return True


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _state(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "loop.json").read_text())


@pytest.mark.parametrize("how", ["stdin", "SIGINT", "SIGTERM"])
def test_stop_ends_the_running_stage_cleanly_and_a_rerun_continues_it(loop_args: list[str], tmp_path: Path,
                                                                      how: str) -> None:
    cmd = [sys.executable, "-m", "blender_instseg.pipeline", *loop_args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(tmp_path, "stoppable"), start_new_session=True)
    try:
        _wait_for(tmp_path, "train: start", alive=proc)
        if how == "stdin":
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        else:
            proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the loop and its stage
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-1500:]
    done = _events(out)[-1]
    assert done["event"] == "done" and done["stopped"] is True and done["rounds"] == 0
    # the loop passed the stop on as a "stop" line: the stage ended by itself, no SIGTERM
    assert _log(tmp_path) == ["evaluate: run", "generate: run", "train: start", "train: stop"]
    rd = _state(tmp_path)["rounds"][0]
    assert rd["status"] == "running" and set(rd["stages"]) == {"evaluate", "plan", "generate", "combine"}
    assert (tmp_path / "run" / "round_1" / "run" / "last.pt").is_file()  # the stopped stage's checkpoint

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env(tmp_path, "ok"))
    assert again.returncode == 0, again.stderr[-1500:]
    done = _events(again.stdout)[-1]
    assert done["event"] == "done" and done["stopped"] is False and done["rounds"] == 1
    assert _log(tmp_path)[4:] == ["train: resume"]  # only the stopped stage runs again, continuing its run
    rd = _state(tmp_path)["rounds"][0]
    assert rd["status"] == "done" and "--resume" in rd["stages"]["train"]["command"]


def test_a_second_signal_terminates_a_stage_that_ignores_the_first(loop_args: list[str], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """First signal: "stop" to the stage, which ignores it; second: SIGTERM to the stage at once.

    In this process (the CLI's ``main``), so the stop grace can be made endless: only the second
    signal can then end the stage. A helper thread plays the person pressing Ctrl+C twice."""
    from blender_instseg.pipeline import __main__ as cli
    from blender_instseg.pipeline import stages

    monkeypatch.setattr(stages, "STOP_GRACE_S", float("inf"))
    for key, value in _env(tmp_path, "stubborn").items():
        monkeypatch.setenv(key, value)
    returned = threading.Event()
    problems: list[str] = []

    def end_the_stage() -> None:  # so that a failing loop returns and the test can report it
        for line in (tmp_path / "log.txt").read_text().splitlines():
            if line.startswith("train: start pid "):
                os.kill(int(line.split(" pid ")[1]), signal.SIGKILL)

    def unhandled(signum: int, frame: object) -> None:  # main() must replace this with its own handler
        problems.append(f"the loop left {signal.Signals(signum).name} to the default handler")
        end_the_stage()

    def person() -> None:
        _wait_for(tmp_path, "train: start")
        os.kill(os.getpid(), signal.SIGINT)
        if not _wait_for(tmp_path, "train: stop ignored", give_up=returned):
            return
        os.kill(os.getpid(), signal.SIGTERM)
        if not returned.wait(60):  # a guard against a hang
            problems.append("the second signal did not end the stage")
            end_the_stage()

    handlers = {s: signal.signal(s, unhandled) for s in (signal.SIGINT, signal.SIGTERM)}
    helper = threading.Thread(target=person, daemon=True)
    helper.start()
    try:
        rc = cli.main(loop_args)
    finally:
        returned.set()
        for s, h in handlers.items():
            signal.signal(s, h)
    helper.join(10)
    assert not problems, problems
    assert rc == 0
    done = _events(capsys.readouterr().out)[-1]
    assert done["event"] == "done" and done["stopped"] is True and done["rounds"] == 0
    assert _log(tmp_path) == ["evaluate: run", "generate: run", "train: start", "train: stop ignored", "train: SIGTERM"]
    rd = _state(tmp_path)["rounds"][0]
    assert rd["status"] == "running" and "train" not in rd["stages"]
    assert not (tmp_path / "run" / "round_1" / "run" / "last.pt").exists()  # terminated before it saved
