"""Run one stage (generator, trainer, evaluator) as a child process and follow its JSON-lines events.

Every stage of ``scripts/demo.py`` and of the mining loop is a separate process, exactly as the
Blender panel runs them: the child speaks ``core.protocol`` on stdout, its ``done`` event is the
result, and a non-zero exit, an ``error`` event or a missing ``done`` is a failure with one line
meant for a person. The child itself is a ``procs.child.Child``; command lines come from ``procs.argv``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import IO, Callable, Sequence

from ..core.protocol import Event
from ..procs.argv import child_env
from ..procs.child import Child, ChildStartError

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0  # after "stop" on stdin, a child gets this long before SIGTERM


class StageError(RuntimeError):
    """A stage failed; the message is one line."""


class StopSignal(threading.Event):
    """Set to ask the running stage to stop cleanly ("stop" on its stdin); ``force`` also terminates it."""

    force = False


def run_stage(name: str, argv: Sequence[str], on_event: Callable[[Event], None] | None = None, *,
              env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              stop: StopSignal | None = None) -> dict:
    """Run one child to the end; return its ``done`` event data, or raise ``StageError`` (one line).

    Each event goes to ``on_event`` as it arrives. When ``stop`` is set the child gets "stop" on
    stdin (generator and trainer stop cleanly and still send ``done`` with ``stopped: true``);
    SIGTERM follows after ``STOP_GRACE_S``, or at once when ``stop.force``.
    """
    log.debug("%s: %s", name, " ".join(map(str, argv)))
    child = Child(argv, env=child_env(env=env), cwd=cwd, name=name)
    try:
        child.start()
    except ChildStartError as exc:
        raise StageError(f"stage '{name}' could not start ({argv[0]}): {exc.reason}") from None
    stop_sent: float | None = None
    terminated = False
    try:
        while True:
            for ev in child.poll():
                if on_event is not None:
                    on_event(ev)
            if child.finished:
                break
            if stop is not None and stop.is_set() and child.running and not terminated:
                now = time.monotonic()
                if stop_sent is None:
                    child.send("stop")
                    stop_sent = now
                if stop.force or now - stop_sent > STOP_GRACE_S:
                    child.terminate()
                    terminated = True
            time.sleep(0.02)
    finally:
        child.close()
    rc = child.returncode
    done = child.result().done
    error = child.error_event.message if child.error_event is not None else None
    if rc != 0 or done is None or error is not None:
        last = next((ln.strip() for ln in reversed(child.stderr_tail().splitlines()) if ln.strip()), "")
        detail = error or last or f"exit code {rc}"
        raise StageError(f"stage '{name}' failed: {detail}")
    return done.data


def print_events(name: str, stream: IO[str] | None = None) -> Callable[[Event], None]:
    """An ``on_event`` that prints progress (at most once a second), eval results and errors on one line each."""
    import json

    out = stream or sys.stdout
    last = [0.0]

    def show(ev: Event) -> None:
        if ev.event == "progress":
            now = time.monotonic()
            if now - last[0] > 1.0 or ev.get("step") == ev.get("total"):
                loss = ev.get("loss")
                extra = f" loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
                eta = ev.get("eta_s")
                extra += f" eta {eta:.0f}s" if isinstance(eta, (int, float)) else ""
                print(f"   {name}: {ev.get('step')}/{ev.get('total')}{extra}", file=out, flush=True)
                last[0] = now
        elif ev.event == "eval":
            print(f"   {name}: eval {json.dumps(ev.get('metrics'))}", file=out, flush=True)
    return show
