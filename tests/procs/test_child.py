"""procs.child.Child / run_blocking against small real child processes (no mocks: real pipes, real signals)."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from blender_instseg.procs import child
from blender_instseg.procs.argv import child_env, package_dir

PROGRESS_THEN_DONE = """
    import json, sys, time
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for i in range(1, n + 1):
        print(json.dumps({"event": "progress", "step": i, "total": n, "loss": 1.0 / i}), flush=True)
    print("a stray line from some library", flush=True)
    print(json.dumps({"event": "done", "checkpoint": "/tmp/x.pt"}), flush=True)
"""
CRASH = """
    import json, sys
    print(json.dumps({"event": "progress", "step": 1, "total": 5}), flush=True)
    raise RuntimeError("CUDA exploded in step 2")
"""
ERROR_EVENT = """
    import json, sys
    print(json.dumps({"event": "error", "message": "dataset has no images"}), flush=True)
    sys.exit(2)
"""
STOPPABLE = """
    import json, signal, sys, threading, time
    # says which way it was asked to end, so a test can tell "stop" from SIGTERM by the events
    signal.signal(signal.SIGTERM, lambda *a: (print(json.dumps({"event": "log", "message": "got SIGTERM"}), flush=True),
                                             sys.exit(15)))
    print(json.dumps({"event": "progress", "step": 0, "total": 100}), flush=True)
    stop = threading.Event()
    def watch():
        for line in sys.stdin:
            if line.strip() == "stop":
                print(json.dumps({"event": "log", "message": "got stop"}), flush=True)
                stop.set(); return
    threading.Thread(target=watch, daemon=True).start()
    while not stop.is_set():
        time.sleep(0.01)
    print(json.dumps({"event": "checkpoint", "path": "/tmp/last.pt", "step": 7}), flush=True)
    print(json.dumps({"event": "done", "stopped": True}), flush=True)
"""
STUBBORN = """
    import json, signal, sys, time
    # survives "stop" and SIGTERM, saying so on stdout; only SIGKILL ends it
    signal.signal(signal.SIGTERM, lambda *a: print(json.dumps({"event": "log", "message": "got SIGTERM"}), flush=True))
    print(json.dumps({"event": "progress", "step": 0, "total": 1}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            print(json.dumps({"event": "log", "message": "got stop"}), flush=True)
    while True:
        time.sleep(0.05)
"""
JUNK = """
    import sys
    print("not json at all", flush=True)
    print("{broken json", flush=True)
    print('{"no_event_key": 1}', flush=True)
    print('{"event": "progress", "step": 1, "total": 1}', flush=True)
    print('{"event": "done"}', flush=True)
"""
NO_DONE = """
    import json
    print(json.dumps({"event": "progress", "step": 1, "total": 2}), flush=True)
"""


def _child(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, "-u", str(path)]


def test_progress_then_done_via_poll(tmp_path: Path) -> None:
    job = child.Child(_child(tmp_path, "ok", PROGRESS_THEN_DONE) + ["4"], name="trainer").start()
    events = []
    deadline = time.monotonic() + 20
    while not job.finished and time.monotonic() < deadline:
        events += job.poll()
        time.sleep(0.02)
    events += job.poll()
    job.close()
    kinds = [e.event for e in events]
    assert kinds == ["progress"] * 4 + ["log", "done"]
    assert [e.get("step") for e in events[:4]] == [1, 2, 3, 4]
    assert events[4].message == "a stray line from some library"
    res = job.result()
    assert res.ok and res.returncode == 0 and res.done.get("checkpoint") == "/tmp/x.pt"


def test_crash_reports_last_stderr_line(tmp_path: Path) -> None:
    seen = []
    res = child.run_blocking(_child(tmp_path, "crash", CRASH), seen.append, name="trainer", timeout=30)
    assert not res.ok and res.returncode == 1
    assert res.error.startswith("trainer failed (exit code 1)")
    assert "RuntimeError: CUDA exploded in step 2" in res.error
    assert [e.event for e in seen] == ["progress"]


def test_error_event_message_wins(tmp_path: Path) -> None:
    res = child.run_blocking(_child(tmp_path, "err", ERROR_EVENT), timeout=30)
    assert not res.ok and res.error == "dataset has no images" and res.returncode == 2


def test_exit_zero_without_done_is_a_failure(tmp_path: Path) -> None:
    res = child.run_blocking(_child(tmp_path, "nodone", NO_DONE), name="predictor", timeout=30)
    assert not res.ok and res.returncode == 0
    assert res.error.startswith("predictor exited without finishing")


def test_junk_lines_become_log_events(tmp_path: Path) -> None:
    seen = []
    res = child.run_blocking(_child(tmp_path, "junk", JUNK), seen.append, timeout=30)
    assert res.ok
    assert [e.event for e in seen] == ["log", "log", "log", "progress", "done"]
    assert seen[1].message == "{broken json"


def _first_events(job: child.Child) -> list:
    """Events until the first one arrives: the child is up and has installed its handlers."""
    events: list = []
    deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
    while not events and time.monotonic() < deadline:
        events = job.poll()
        time.sleep(0.02)
    assert events, "the child never started"
    return events


def test_stop_line_gives_clean_exit(tmp_path: Path) -> None:
    job = child.Child(_child(tmp_path, "stoppable", STOPPABLE), name="trainer").start()
    events = _first_events(job)
    assert job.running
    # a grace far longer than a clean stop takes: the child ends on the "stop" line, or the events show the SIGTERM
    rc = job.stop(grace_s=30, term_s=5)
    assert job.wait(timeout=10, on_event=events.append)
    job.close()
    assert rc == 0
    assert [(e.event, e.message) for e in events[1:]] == [("log", "got stop"), ("checkpoint", ""), ("done", "")]
    res = job.result()
    assert res.ok and res.cancelled and res.done.get("stopped") is True


def test_stubborn_child_is_killed(tmp_path: Path) -> None:
    job = child.Child(_child(tmp_path, "stubborn", STUBBORN), name="stubborn").start()
    events = _first_events(job)  # it is up and has set its SIGTERM handler
    rc = job.stop(grace_s=1.0, term_s=1.0)
    assert job.wait(timeout=10, on_event=events.append)
    job.close()
    # asked in order: "stop", then SIGTERM (both survived), then SIGKILL
    assert [e.message for e in events[1:]] == ["got stop", "got SIGTERM"]
    assert rc == -9
    res = job.result()
    assert res.cancelled and res.error is None and not res.ok


def test_timeout_stops_and_reports(tmp_path: Path) -> None:
    seen: list = []
    res = child.run_blocking(_child(tmp_path, "stoppable", STOPPABLE), seen.append, name="trainer", timeout=0.5)
    assert not res.ok and res.error.startswith("trainer timed out")
    # the timeout asked the child to stop and it ended cleanly on that, keeping its checkpoint
    assert [(e.event, e.message) for e in seen] == [("progress", ""), ("log", "got stop"), ("checkpoint", ""),
                                                    ("done", "")]
    assert res.returncode == 0 and res.done.get("stopped") is True


def test_missing_interpreter_is_an_error_not_an_exception(tmp_path: Path) -> None:
    res = child.run_blocking([str(tmp_path / "no-such-python"), "-c", "pass"], name="trainer")
    assert not res.ok and res.returncode is None
    assert res.error.startswith("cannot start trainer")
    with pytest.raises(child.ChildStartError):
        child.Child([str(tmp_path / "no-such-python")]).start()


def test_child_env_puts_package_parent_first(tmp_path: Path) -> None:
    env = child_env()
    first = env["PYTHONPATH"].split(":")[0]
    assert Path(first) == package_dir().parent
    res = child.run_blocking(
        [sys.executable, "-c",
         "import json, blender_instseg.core.protocol as p; p.emit('done', path=p.__file__)"],
        env=env, cwd=str(tmp_path), timeout=30)
    assert res.ok and res.done.get("path").startswith(str(package_dir()))


def test_plain_cli_without_events_can_succeed(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('AP 1.000'); print('report written')"]
    res = child.run_blocking(argv, name="evaluate", timeout=30, require_done=False)
    assert res.ok and res.done is None and res.error is None
    res = child.run_blocking([sys.executable, "-c", "import sys; sys.exit('error: no such file')"],
                             name="evaluate", timeout=30, require_done=False)
    assert not res.ok and res.error == "evaluate failed (exit code 1): error: no such file"
