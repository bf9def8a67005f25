"""The JSON-lines protocol between a child process (trainer, predictor, generator) and its parent.

Children write one JSON object per line on stdout; every object has an ``"event"`` key. Anything
on stdout that is not such a line (a stray print from a library) is passed through as a ``log``
event by the parent instead of breaking it. The parent may write ``stop`` (or ``{"cmd": "stop"}``)
on the child's stdin to ask for a clean stop. The schema lives here once, so both sides agree.

Events:
  progress  step, total, [loss, eta_s, lr, epoch, phase, images_per_s]
  eval      step, metrics (dict of floats)
  log       message, [level]
  checkpoint path, step
  done      [result fields, e.g. checkpoint, metrics, out]
  error     message (one line, meant for a person), [id: the request it answers, for a serving child]
  result    id, out, [count, ms, ...]: a serving child's answer to one stdin request
            (``python -m blender_instseg.ml predict --serve``; requests are described in ml/predict.py)
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any

EVENTS = ("progress", "eval", "log", "checkpoint", "done", "error", "result")


@dataclass
class Event:
    """One parsed protocol line."""

    event: str
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def message(self) -> str:
        return str(self.data.get("message", ""))


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf; send them as null so the parent's strict parser never chokes."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _clean(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def encode_event(event: str, **data: Any) -> str:
    """Return one protocol line (no trailing newline)."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
    payload = {"event": event, **{k: _clean(v) for k, v in data.items()}}
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def emit(event: str, stream: IO[str] | None = None, **data: Any) -> None:
    """Write one event line and flush, so the parent sees progress as it happens."""
    out = sys.stdout if stream is None else stream
    out.write(encode_event(event, **data) + "\n")
    out.flush()


def reserve_stdout_for_events() -> None:
    """Keep file descriptor 1 for this process's events only: ``sys.stdout`` moves to a duplicate of
    it, and fd 1 itself points at stderr from now on.

    Libraries written in C print straight to fd 1, out of Python's reach: bpy logs a colour-management
    line at import when its parent Python had bpy imported too (Blender 5.3), and Cycles' GPU probing
    prints warnings. In a child whose stdout is the JSON-lines channel those lines belong on stderr.
    Call it before importing such a library; without a real fd 1 (embedded Pythons) it does nothing.
    """
    try:
        sys.stdout.flush()
        events_fd = os.dup(1)
    except (OSError, ValueError):
        return
    sys.stdout = os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)


def parse_line(line: str) -> Event:
    """Parse one stdout line from a child. Non-protocol text becomes a ``log`` event, never an error."""
    text = line.strip()
    if not text:
        return Event("log", {"message": ""})
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and obj.get("event") in EVENTS:
            name = obj.pop("event")
            return Event(name, obj)
    return Event("log", {"message": text})


def send_line(stdin: IO[str] | None, line: str = "stop") -> bool:
    """Write one line (by default the stop command) to a child's stdin; False when the pipe is gone.

    A child that already exited closes its end, so writing raises; the parent treats that as
    "nothing to tell it" rather than an error.
    """
    if stdin is None:
        return False
    try:
        stdin.write(line.rstrip("\n") + "\n")
        stdin.flush()
        return True
    except (OSError, ValueError):
        return False


def is_stop_command(line: str) -> bool:
    """True for a line the parent sends on stdin to ask for a clean stop."""
    text = line.strip()
    if text in ("stop",):
        return True
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return False
        return isinstance(obj, dict) and obj.get("cmd") == "stop"
    return False
