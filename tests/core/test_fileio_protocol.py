"""Atomic writes and the JSON-lines protocol: the two contracts every process boundary relies on."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from blender_instseg.core import fileio, protocol


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    fileio.atomic_write_json(target, {"v": 1})
    fileio.atomic_write_json(target, {"v": 2, "list": [1, 2]})
    assert json.loads(target.read_text()) == {"v": 2, "list": [1, 2]}
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & 0o044, "other tools must be able to read dataset files"


def test_atomic_write_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    fileio.atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        fileio.atomic_write_json(target, {"v": object()})  # not serialisable: fails before any write
    with pytest.raises(TypeError):
        fileio.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]  # fails while writing the temp
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("content, fragment", [
    (None, "not found"),
    ("{broken", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
])
def test_read_json_one_line_errors(tmp_path: Path, content, fragment: str) -> None:
    p = tmp_path / "x.json"
    if isinstance(content, str):
        p.write_text(content)
    elif isinstance(content, bytes):
        p.write_bytes(content)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        fileio.read_json(p, "annotations")
    message = str(info.value)
    assert fragment in message and "\n" not in message and str(p) in message


def test_read_json_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        fileio.read_json(tmp_path)


def test_protocol_round_trip_and_cleaning() -> None:
    line = protocol.encode_event("progress", step=np.int64(3), total=10, loss=np.float32(0.5),
                                 eta_s=float("nan"), extra={"inf": float("inf")})
    assert "\n" not in line
    ev = protocol.parse_line(line + "\n")
    assert ev.event == "progress"
    assert ev.get("step") == 3 and ev.get("total") == 10 and ev.get("loss") == 0.5
    assert ev.get("eta_s") is None and ev.get("extra") == {"inf": None}


def test_protocol_unknown_event_rejected() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        protocol.encode_event("progres", step=1)


@pytest.mark.parametrize("line", ["plain text from a library", '{"not": "an event"}', "{bad json", '{"event": "nope"}'])
def test_protocol_junk_becomes_log(line: str) -> None:
    ev = protocol.parse_line(line)
    assert ev.event == "log" and ev.message == line


def test_protocol_error_message_and_stop_commands() -> None:
    ev = protocol.parse_line(protocol.encode_event("error", message="torch is not installed"))
    assert ev.event == "error" and ev.message == "torch is not installed"
    assert protocol.is_stop_command("stop\n")
    assert protocol.is_stop_command('{"cmd": "stop"}')
    assert not protocol.is_stop_command("stopp")
    assert not protocol.is_stop_command('{"cmd": "go"}')


def test_send_line_writes_one_line_and_tolerates_a_gone_child() -> None:
    import io
    import subprocess
    import sys

    buf = io.StringIO()
    assert protocol.send_line(buf) and protocol.send_line(buf, '{"cmd":"stop"}\n')
    assert buf.getvalue().splitlines() == ["stop", '{"cmd":"stop"}']
    assert all(protocol.is_stop_command(line) for line in buf.getvalue().splitlines())
    assert protocol.send_line(None) is False
    proc = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE, text=True)
    proc.wait()
    assert proc.stdin is not None
    proc.stdin.close()
    assert protocol.send_line(proc.stdin) is False  # closed pipe: no exception


def test_temp_names_are_recognised_exactly(tmp_path: Path) -> None:
    assert fileio.temp_target(tmp_path / ".last.pt.ab_c12z9.tmp") == tmp_path / "last.pt"
    assert fileio.temp_target(tmp_path / ".000001.png.4242.link.tmp") == tmp_path / "000001.png"
    for name in ("last.pt", ".last.pt", ".last.pt.tmp", "x.abcdefgh.tmp", ".a.ABCDEFGH.tmp", ".a.abc.tmp"):
        assert fileio.temp_target(tmp_path / name) is None, name
    fileio.atomic_write_bytes(tmp_path / "f.bin", b"x")
    assert fileio.remove_stale_temp_files(tmp_path) == [] and (tmp_path / "f.bin").read_bytes() == b"x"
