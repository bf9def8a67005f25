"""``predict --serve``: one warm model process answering JSON-line requests, as Predict View drives it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from blender_instseg.core import protocol
from tests.ml.conftest import ROOT, events, run_cli

pytestmark = pytest.mark.torch


class Served:
    """A ``predict --serve`` child whose stdout is read on a thread, so a test can wait for one answer at a time."""

    def __init__(self, checkpoint: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "blender_instseg.ml", "predict", "--serve", "--checkpoint", str(checkpoint),
             "--device", "cpu", *extra],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, obj: dict | str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        self.proc.stdin.flush()

    def next_event(self, timeout: float = 60) -> protocol.Event:
        line = self.lines.get(timeout=timeout)
        assert line is not None, f"server exited: {self.proc.wait()} {self.proc.stderr.read() if self.proc.stderr else ''}"
        return protocol.parse_line(line)

    def finish(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code


@pytest.fixture()
def served(trained_run: Path):
    server = Served(trained_run / "last.pt")
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.finish()


def _one_shot(trained_run: Path, image: Path, out: Path, threshold: float) -> list[dict]:
    proc = run_cli("predict", "--checkpoint", str(trained_run / "last.pt"), "--images", str(image), "--out", str(out),
                   "--score-threshold", f"{threshold:g}", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_serve_answers_requests_like_the_one_shot_command_and_survives_bad_ones(
        served: Served, trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    images = sorted((shapes_root / "images").glob("*.png"))[:2]
    ready = served.next_event()
    assert ready.event == "log" and ready.message == "ready" and ready.get("image_size") == 64

    served.send({"cmd": "predict", "id": 7, "image": str(images[0]), "out": str(tmp_path / "a.json"),
                 "score_threshold": 0.0})
    first = served.next_event()
    assert first.event == "result" and first.get("id") == 7 and first.get("out") == str(tmp_path / "a.json")
    assert first.get("ms") > 0 and (first.get("width"), first.get("height")) == (64, 64)

    # bad requests: each gets an error with its id (null when unreadable) and the server keeps going
    served.send("{not json")
    bad_json = served.next_event()
    assert bad_json.event == "error" and bad_json.get("id") is None and "not valid JSON" in bad_json.message
    served.send({"cmd": "predict", "id": 8, "image": str(tmp_path / "missing.png"), "out": str(tmp_path / "m.json")})
    missing = served.next_event()
    assert missing.event == "error" and missing.get("id") == 8 and "cannot read image" in missing.message
    assert not (tmp_path / "m.json").exists()

    # a later request with a different threshold gives what a fresh one-shot process gives at that threshold
    served.send({"cmd": "predict", "id": 9, "image": str(images[1]), "out": str(tmp_path / "b.json"),
                 "score_threshold": 0.05})
    second = served.next_event()
    assert second.event == "result" and second.get("id") == 9

    served.send("stop")
    done = served.next_event()
    assert done.event == "done" and done.get("served") == 2
    assert served.finish() == 0

    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert first.get("count") == len(a) > 0 and second.get("count") == len(b)
    assert all(p["image_id"] == 1 for p in a + b)
    assert a == _one_shot(trained_run, images[0], tmp_path / "one_a.json", 0.0)
    assert b == _one_shot(trained_run, images[1], tmp_path / "one_b.json", 0.05)


def test_end_of_input_stops_the_server_cleanly(trained_run: Path, shapes_root: Path, tmp_path: Path) -> None:
    """A parent that dies closes the pipe: the server must exit by itself, not linger as an orphan."""
    image = sorted((shapes_root / "images").glob("*.png"))[0]
    request = json.dumps({"cmd": "predict", "id": 1, "image": str(image), "out": str(tmp_path / "p.json")})
    proc = run_cli("predict", "--serve", "--checkpoint", str(trained_run / "last.pt"), "--device", "cpu",
                   stdin=request + "\n", timeout=120)
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    assert [e.event for e in evs] == ["log", "result", "done"]
    assert evs[1].get("id") == 1 and (tmp_path / "p.json").is_file()
    assert evs[2].get("served") == 1


def test_serve_argument_errors_are_one_line(trained_run: Path, tmp_path: Path) -> None:
    both = run_cli("predict", "--serve", "--checkpoint", str(trained_run / "last.pt"), "--out", str(tmp_path / "p.json"))
    assert both.returncode == 2 and "not --out" in both.stderr.splitlines()[-1]
    neither = run_cli("predict", "--checkpoint", str(trained_run / "last.pt"))
    assert neither.returncode == 2 and "required: --images, --out" in neither.stderr.splitlines()[-1]
    bad_ckpt = tmp_path / "junk.pt"
    bad_ckpt.write_bytes(b"\x00garbage" * 100)
    junk = run_cli("predict", "--serve", "--checkpoint", str(bad_ckpt), stdin="")
    assert junk.returncode == 2 and "Traceback" not in junk.stderr
    assert [(e.event, "is not a checkpoint of this project" in e.message) for e in events(junk.stdout)] == [("error", True)]


def test_incomplete_requests_and_bad_thresholds_are_errors_that_leave_the_server_as_it_was(
        served: Served, shapes_root: Path, tmp_path: Path) -> None:
    """Each bad request gets one error line with its id and writes nothing; the server keeps going and
    answers the next good request exactly as it answered the same request before."""
    image = str(sorted((shapes_root / "images").glob("*.png"))[0])
    assert served.next_event().message == "ready"
    served.send({"cmd": "predict", "id": 1, "image": image, "out": str(tmp_path / "before.json"), "score_threshold": 0.0})
    assert served.next_event().event == "result"

    bad = [({"id": 2, "out": str(tmp_path / "2.json")}, "needs 'image' and 'out'"),
           ({"id": 3, "image": image}, "needs 'image' and 'out'"),
           ({"id": 4, "image": "", "out": str(tmp_path / "4.json")}, "needs 'image' and 'out'"),
           ({"id": 5, "image": image, "out": str(tmp_path / "5.json"), "score_threshold": "high"}, "must be a number"),
           ({"id": 6, "image": image, "out": str(tmp_path / "6.json"), "score_threshold": True}, "must be a number"),
           ({"id": 7, "image": image, "out": str(tmp_path / "7.json"), "score_threshold": 1.5}, "must be in [0, 1]"),
           ({"id": 8, "image": image, "out": str(tmp_path / "8.json"), "score_threshold": -0.1}, "must be in [0, 1]")]
    for request, message in bad:
        served.send({"cmd": "predict", **request})
        answer = served.next_event()
        assert (answer.event, answer.get("id")) == ("error", request["id"]) and message in answer.message, answer
    served.send('{"cmd": "predict", "id": 9, "image": "' + image + '", "out": "' + str(tmp_path / "9.json")
                + '", "score_threshold": NaN}')
    nan = served.next_event()
    assert (nan.event, nan.get("id")) == ("error", 9) and "must be in [0, 1]" in nan.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.json"]  # nothing written for a refused request

    served.send({"cmd": "predict", "id": 10, "image": image, "out": str(tmp_path / "after.json"), "score_threshold": 0.0})
    after = served.next_event()
    assert after.event == "result" and after.get("id") == 10
    served.send("stop")
    assert served.next_event().get("served") == 2
    assert served.finish() == 0
    before = json.loads((tmp_path / "before.json").read_text())
    assert before and json.loads((tmp_path / "after.json").read_text()) == before


@pytest.mark.parametrize("flag", ["--images", "--overlays", "--gt"])
def test_serve_refuses_per_run_inputs_and_outputs(trained_run: Path, tmp_path: Path, flag: str) -> None:
    """--serve takes images and outputs per request: a one-shot flag with it is a one-line usage error."""
    proc = run_cli("predict", "--serve", "--checkpoint", str(trained_run / "last.pt"), flag, str(tmp_path / "x"),
                   stdin="")
    message = f"predict --serve takes images and outputs per request on stdin, not {flag}"
    assert proc.returncode == 2 and [(e.event, e.message.endswith(message)) for e in events(proc.stdout)] == [("error", True)]
    assert proc.stderr.splitlines() == [f"error: predict: {message}"]
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()
