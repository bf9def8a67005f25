"""Drive one child process at a time for the operators, blocking or through a timer.

Both paths feed the same ``apply_event`` and ``finish`` functions, so what the tests exercise in
background mode (``run_blocking``) is the code the timer runs in the UI. The timer callback
(``tick``) never touches bpy from the reader thread: it drains the queue on the main thread.
Cancel is non-blocking: the timer sends "stop", then escalates to SIGTERM and SIGKILL on later
ticks, so the UI never freezes waiting for a stubborn child. A job may be a request to a warm
server (``JobSpec.make_job``, Predict View) instead of a fresh process; Cancel then stops that server.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import bpy

from ...core.protocol import Event
from ...procs.child import Child, ChildResult, ChildStartError, Drivable, drive, run_blocking
from ..children import SERVERS
from ..props import job_state

log = logging.getLogger(__name__)

TICK_S = 0.2
STOP_GRACE_S = 10.0
TERM_GRACE_S = 5.0

# on_done(context, result) -> summary line; raise ValueError/OSError for a failure the user should see
DoneHook = Callable[[Any, ChildResult], str]


@dataclass
class JobSpec:
    kind: str  # "generate" | "train" | "evaluate" | "predict"
    argv: list[str]
    on_done: DoneHook
    env: dict[str, str] | None = None
    cwd: str | None = None
    label: str = ""  # shown while running
    require_done: bool = True  # False for plain CLIs without protocol events
    extra: dict[str, Any] = field(default_factory=dict)
    # Builds the child to drive instead of ``Child(argv)``: e.g. a request to a warm server
    # (``procs.server.ServerCall``), which answers without a process start per click.
    make_job: Callable[[], Drivable] | None = None


@dataclass
class _Active:
    spec: JobSpec
    job: Drivable
    stop_requested_at: float | None = None
    terminated_at: float | None = None


_active: _Active | None = None

# Background mode has no event loop, so operators block there. Tests set this to take the UI path
# anyway and then call ``tick()`` by hand, standing in for bpy.app.timers.
ASYNC_IN_BACKGROUND = False


def is_running() -> bool:
    return _active is not None


def reset_state(state: Any, spec: JobSpec) -> None:
    state.running = True
    state.kind = spec.kind
    state.progress = 0.0
    state.status = spec.label or f"{spec.kind}: starting"
    state.loss = 0.0
    state.has_loss = False
    state.eta_s = -1.0
    state.last_error = ""
    state.summary = ""


def apply_event(state: Any, ev: Event, kind: str = "") -> None:
    """Turn one protocol event into panel state (progress bar, loss, ETA, status line)."""
    if ev.event == "progress":
        step, total = ev.get("step"), ev.get("total")
        if isinstance(step, (int, float)) and isinstance(total, (int, float)) and total > 0:
            state.progress = max(0.0, min(1.0, float(step) / float(total)))
            state.status = f"{kind or 'job'}: {int(step)}/{int(total)}"
        phase = ev.get("phase")
        if phase:
            state.status += f" ({phase})"
        loss = ev.get("loss")
        if isinstance(loss, (int, float)):
            state.loss = float(loss)
            state.has_loss = True
        eta = ev.get("eta_s")
        state.eta_s = float(eta) if isinstance(eta, (int, float)) else -1.0
    elif ev.event == "checkpoint":
        state.status = f"{kind}: checkpoint at step {ev.get('step')}"
    elif ev.event == "eval":
        metrics = ev.get("metrics") or {}
        shown = ", ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:3] if isinstance(v, (int, float)))
        if shown:
            state.status = f"{kind}: eval {shown}"
    elif ev.event == "log" and ev.message:
        log.debug("%s: %s", kind, ev.message)
    elif ev.event == "error":
        state.last_error = ev.message


def finish(context: Any, spec: JobSpec, result: ChildResult) -> tuple[bool, str]:
    """Record the outcome in the panel state; returns (ok, message for Operator.report)."""
    state = job_state(context)
    state.running = False
    if result.error:
        state.last_error = result.error
        state.status = f"{spec.kind} failed"
        log.error("%s failed: %s", spec.kind, result.error)
        return False, result.error
    if result.cancelled and result.done is None:
        state.status = f"{spec.kind} cancelled"
        return True, state.status
    try:
        summary = spec.on_done(context, result)
    except (ValueError, OSError, KeyError) as exc:
        state.last_error = f"{spec.kind}: {exc}"
        state.status = f"{spec.kind} failed"
        return False, state.last_error
    state.progress = 1.0
    state.summary = summary
    state.status = f"{spec.kind} cancelled (kept results)" if result.cancelled else f"{spec.kind} finished"
    return True, summary


def run_now(context: Any, spec: JobSpec, timeout: float | None = None) -> tuple[bool, str]:
    """Blocking path (background mode, scripts, tests)."""
    if _active is not None:
        return False, f"another job is running ({_active.spec.kind}); cancel it first"
    state = job_state(context)
    reset_state(state, spec)
    on_event = lambda ev: apply_event(state, ev, spec.kind)  # noqa: E731
    if spec.make_job is not None:
        result = drive(spec.make_job(), on_event, name=spec.kind, timeout=timeout)
    else:
        result = run_blocking(spec.argv, on_event, env=spec.env, cwd=spec.cwd, name=spec.kind,
                              timeout=timeout, require_done=spec.require_done)
    return finish(context, spec, result)


def start(context: Any, spec: JobSpec) -> tuple[bool, str]:
    """UI path: start the child and poll it from a timer. Returns (started, message)."""
    global _active
    if _active is not None:
        return False, f"another job is running ({_active.spec.kind}); cancel it first"
    state = job_state(context)
    reset_state(state, spec)
    job: Drivable
    if spec.make_job is not None:
        job = spec.make_job()
    else:
        job = Child(spec.argv, env=spec.env, cwd=spec.cwd, name=spec.kind, require_done=spec.require_done)
    try:
        job.start()
    except ChildStartError as exc:
        return finish(context, spec, ChildResult(returncode=None, error=str(exc)))
    _active = _Active(spec, job)
    from .. import add_timer

    add_timer(tick, first_interval=TICK_S, persistent=True)  # survive File > Open while a job runs
    tag_redraw(context)
    return True, spec.label or f"{spec.kind} started"


def tick() -> float | None:
    """Timer callback: drain events, escalate a pending cancel, finish when the child is done."""
    global _active
    active = _active
    if active is None:
        return None
    context = bpy.context
    state = job_state(context)
    state.running, state.kind = True, active.spec.kind  # a File > Open replaces the WindowManager
    for ev in active.job.poll():
        apply_event(state, ev, active.spec.kind)
    now = time.monotonic()
    proc = active.job.proc
    if active.stop_requested_at is not None and proc is not None and proc.poll() is None:
        if active.terminated_at is None and now - active.stop_requested_at > STOP_GRACE_S:
            proc.terminate()
            active.terminated_at = now
        elif active.terminated_at is not None and now - active.terminated_at > TERM_GRACE_S:
            proc.kill()
    if active.job.finished:
        active.job.close()
        _active = None
        with _window_context(context):
            finish(bpy.context, active.spec, active.job.result())
        tag_redraw(context)
        return None
    tag_redraw(context)
    return TICK_S


def _window_context(context: Any) -> Any:
    """Timers run with a bare context (no window); results that select objects need a full one."""
    wm = getattr(context, "window_manager", None)
    window = wm.windows[0] if wm is not None and len(wm.windows) else None
    if window is None or getattr(context, "window", None) is not None:
        return contextlib.nullcontext()
    return context.temp_override(window=window, screen=window.screen)


def request_cancel(context: Any) -> bool:
    """Ask the running child to stop; the timer escalates. In background mode, stop synchronously."""
    active = _active
    if active is None:
        return False
    active.job.cancelled = True
    active.stop_requested_at = time.monotonic()
    active.job.send("stop")
    job_state(context).status = f"{active.spec.kind}: stopping..."
    return True


def shutdown() -> None:
    """Stop any child and the warm predict server (add-on unregister / Blender quitting): no orphans."""
    global _active
    active = _active
    _active = None
    if active is not None:
        active.job.stop(grace_s=2.0, term_s=2.0)
        active.job.close()
    SERVERS.stop_all()


def tag_redraw(context: Any) -> None:
    wm = getattr(context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type in {"VIEW_3D", "IMAGE_EDITOR"}:
                area.tag_redraw()
