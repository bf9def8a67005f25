"""The stage runner with real child processes (small Python scripts speaking core.protocol)."""

from __future__ import annotations

import sys
import threading

import pytest

from blender_instseg.pipeline.stages import StageError, StopSignal, run_stage

CHILD = """
import json, sys
def emit(**kw): print(json.dumps(kw), flush=True)
mode = sys.argv[1]
emit(event="progress", step=1, total=2)
print("a stray library print", flush=True)
if mode == "ok":
    emit(event="done", result=42)
elif mode == "crash":
    print("Traceback ...", file=sys.stderr); print("ValueError: bad thing", file=sys.stderr); sys.exit(3)
elif mode == "error":
    emit(event="error", message="dataset not found: /x"); sys.exit(2)
elif mode == "nodone":
    pass
elif mode == "stop":
    emit(event="log", message="waiting")
    for line in sys.stdin:
        if line.strip() == "stop":
            emit(event="done", stopped=True); break
"""


def child(mode: str) -> list[str]:
    return [sys.executable, "-c", CHILD, mode]


def test_done_and_events() -> None:
    seen = []
    done = run_stage("t", child("ok"), seen.append)
    assert done == {"result": 42}
    assert [e.event for e in seen] == ["progress", "log", "done"] and seen[1].message == "a stray library print"


@pytest.mark.parametrize(("mode", "message"), [("crash", "stage 't' failed: ValueError: bad thing"),
                                               ("error", "stage 't' failed: dataset not found: /x"),
                                               ("nodone", "stage 't' failed: exit code 0")])
def test_failures_are_one_line(mode: str, message: str) -> None:
    with pytest.raises(StageError) as info:
        run_stage("t", child(mode))
    assert str(info.value) == message


def test_stop_is_forwarded_on_stdin() -> None:
    stop = StopSignal()
    started = threading.Event()

    def on_event(ev) -> None:  # noqa: ANN001
        if ev.event == "log" and ev.message == "waiting":
            started.set()
            stop.set()

    assert run_stage("t", child("stop"), on_event, stop=stop) == {"stopped": True}
    assert started.is_set()


def test_missing_program(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(StageError, match="could not start"):
        run_stage("t", [str(tmp_path / "no-such-python")])
    # the command lines' checks moved with them to tests/procs/test_argv.py
