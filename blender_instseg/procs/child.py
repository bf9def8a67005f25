"""Start, stream and stop one child process whose stdout speaks ``core.protocol`` JSON lines.

Blender's UI thread must never block on a child, so a ``Child`` reads the child's stdout on a
reader thread, parses each line with ``core.protocol.parse_line`` and queues the events; the caller
drains them with ``poll()`` (from a ``bpy.app.timers`` callback in the UI, in a loop elsewhere).
Timers and modal operators never run in module (background) mode, so ``run_blocking`` offers the
same thing as one call. Every reader of a child's output in the project is a ``Child``: the
operators, the pipeline's stages and the generator's worker pool.

A child fails when it exits non-zero, emits an ``error`` event, or exits without a ``done``
event; ``ChildResult.error`` then holds one line meant for a person (the child's own error message,
or the last line of its stderr, e.g. a traceback's final line).

Stopping asks politely first ("stop" on stdin: generator and trainer finish cleanly and still send
``done``), then escalates to SIGTERM and SIGKILL with timeouts.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from ..core import protocol
from ..core.protocol import Event

log = logging.getLogger(__name__)

_EOF = object()
STDERR_TAIL_LINES = 40


class ChildStartError(RuntimeError):
    """A child could not be started (missing interpreter, bad working directory, ...).

    ``reason`` is the operating system's words alone, for callers that phrase their own message.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass
class ChildResult:
    """What a finished child left behind."""

    returncode: int | None
    done: Event | None = None
    error: str | None = None
    cancelled: bool = False
    stderr_tail: str = ""
    events: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0


@dataclass
class _State:
    done: Event | None = None
    error_event: Event | None = None
    n_events: int = 0
    logs: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))


def last_line(text: str) -> str:
    """The last non-blank line of ``text``, stripped and cut to 500 characters ('' when none)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            return line[:500]
    return ""


def drain(child: "Drivable", timeout: float | None, interval: float,
           on_event: Callable[[Event], None] | None) -> bool:
    """Poll ``child`` (a Child or ServerCall) until it has finished or ``timeout`` passed; True when finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for ev in child.poll():
            if on_event is not None:
                on_event(ev)
        if child.finished:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Child:
    """One child process whose stdout speaks ``core.protocol`` JSON lines."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, name: str = "job", require_done: bool = True) -> None:
        self.require_done = require_done
        self.argv = [str(a) for a in argv]
        self.env = env
        self.cwd = None if cwd is None else str(cwd)
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.cancelled = False
        self._queue: queue.Queue[object] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._state = _State()
        self._eof = False
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Child":
        if self.proc is not None:
            raise ChildStartError(f"{self.name} already started")
        env = None
        if self.env is not None:
            env = dict(self.env)
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace", bufsize=1, env=env, cwd=self.cwd,
            )
        except OSError as exc:
            reason = str(exc.strerror or exc)
            raise ChildStartError(f"cannot start {self.name} ({self.argv[0]}): {reason}", reason) from None
        out = threading.Thread(target=self._read_stdout, name=f"{self.name}-stdout", daemon=True)
        err = threading.Thread(target=self._read_stderr, name=f"{self.name}-stderr", daemon=True)
        self._threads = [out, err]
        out.start()
        err.start()
        log.debug("started %s: %s", self.name, " ".join(self.argv))
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                if line.strip():
                    self._queue.put(protocol.parse_line(line))
        except (OSError, ValueError):  # pipe closed under us while stopping
            pass
        finally:
            self._queue.put(_EOF)

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                with self._lock:
                    self._stderr.append(line.rstrip("\n"))
        except (OSError, ValueError):
            pass

    # -- caller-thread API -------------------------------------------------------------------
    def poll(self) -> list[Event]:
        """Every event queued since the last call; never blocks."""
        events: list[Event] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _EOF:
                self._eof = True
                continue
            assert isinstance(item, Event)
            self._record(item)
            events.append(item)
        return events

    def _record(self, ev: Event) -> None:
        st = self._state
        st.n_events += 1
        if ev.event == "done":
            st.done = ev
        elif ev.event == "error" and st.error_event is None:
            st.error_event = ev
        elif ev.event == "log" and ev.message:
            st.logs.append(ev.message)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def finished(self) -> bool:
        """The child has exited and every line it wrote has been handed out by ``poll()``."""
        if self.proc is None or self.proc.poll() is None:
            return False
        if not self._eof:
            return False
        return self._queue.empty()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def error_event(self) -> Event | None:
        """The first ``error`` event handed out by ``poll()``, if any."""
        return self._state.error_event

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        with self._lock:
            return "\n".join(list(self._stderr)[-lines:])

    def send(self, line: str) -> bool:
        """Write one line to the child's stdin; False when the pipe is already gone."""
        return protocol.send_line(self.proc.stdin if self.proc is not None else None, line)

    def terminate(self) -> None:
        """SIGTERM now, without waiting (callers that escalate on their own clock)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self, grace_s: float = 10.0, term_s: float = 5.0) -> int | None:
        """Ask politely ("stop" on stdin), then SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        self.cancelled = True
        if self.proc.poll() is None:
            self.send("stop")
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.info("%s ignored stop; terminating", self.name)
                self.proc.terminate()
                try:
                    self.proc.wait(term_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s ignored SIGTERM; killing", self.name)
                    self.proc.kill()
                    self.proc.wait()
        return self.proc.returncode

    def wait(self, timeout: float | None = None, interval: float = 0.05,
             on_event: Callable[[Event], None] | None = None) -> bool:
        """Drain events until the child has finished or ``timeout`` passed; True when finished."""
        return drain(self, timeout, interval, on_event)

    def close(self) -> None:
        """Release pipes and join reader threads (after the child has exited)."""
        if self.proc is None:
            return
        for t in self._threads:
            t.join(timeout=2.0)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def result(self) -> ChildResult:
        """Summarise a finished child; the error line is what the UI shows."""
        rc = self.returncode
        st = self._state
        error: str | None = None
        if st.error_event is not None:
            error = st.error_event.message or "the child reported an error"
        elif self.cancelled and st.done is None:
            error = None
        elif rc is None:
            error = f"{self.name} is still running"
        elif rc != 0:
            error = last_line(self.stderr_tail()) or last_line("\n".join(st.logs)) or ""
            error = f"{self.name} failed (exit code {rc})" + (f": {error}" if error else "")
        elif st.done is None and self.require_done:
            detail = last_line(self.stderr_tail()) or last_line("\n".join(st.logs))
            error = f"{self.name} exited without finishing" + (f": {detail}" if detail else "")
        return ChildResult(returncode=rc, done=st.done, error=error, cancelled=self.cancelled,
                           stderr_tail=self.stderr_tail(), events=st.n_events)


class Drivable(Protocol):
    """What ``drive`` and the operators' job runner need from a child: a ``Child`` or a ``server.ServerCall``."""

    cancelled: bool

    def start(self) -> Any: ...
    def poll(self) -> list[Event]: ...
    @property
    def finished(self) -> bool: ...
    @property
    def running(self) -> bool: ...
    @property
    def proc(self) -> "subprocess.Popen[str] | None": ...
    def send(self, line: str) -> bool: ...
    def stop(self, grace_s: float = 10.0, term_s: float = 5.0) -> int | None: ...
    def close(self) -> None: ...
    def result(self) -> ChildResult: ...


def drive(child: Drivable, on_event: Callable[[Event], None] | None = None, *, name: str = "job",
          timeout: float | None = None, should_stop: Callable[[], bool] | None = None) -> ChildResult:
    """Start ``child`` and drive it to the end in the calling thread (see ``run_blocking``)."""
    try:
        child.start()
    except ChildStartError as exc:
        return ChildResult(returncode=None, error=str(exc))
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            for ev in child.poll():
                if on_event is not None:
                    on_event(ev)
            if child.finished:
                break
            if should_stop is not None and should_stop():
                child.stop()
            elif deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                child.stop()
            else:
                time.sleep(0.02)
    finally:
        if child.running:
            child.stop(grace_s=1.0, term_s=1.0)
        child.close()
    res = child.result()
    if timed_out:
        res.cancelled = False
        res.error = f"{name} timed out after {timeout:.0f} s"
    return res


def run_blocking(argv: Sequence[str], on_event: Callable[[Event], None] | None = None, *,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 name: str = "job", timeout: float | None = None,
                 should_stop: Callable[[], bool] | None = None, require_done: bool = True) -> ChildResult:
    """Run a child to the end in the calling thread, handing each event to ``on_event``.

    Used in background mode (tests, scripts), where timers never fire. ``timeout`` stops the child
    (stop, terminate, kill) and reports it as an error; so does ``should_stop()`` returning True,
    which counts as a cancel. A child that cannot be started gives an error result, not an exception.
    ``require_done=False`` is for plain CLIs that print no protocol events (exit 0 = success).
    """
    child = Child(argv, env=env, cwd=cwd, name=name, require_done=require_done)
    return drive(child, on_event, name=name, timeout=timeout, should_stop=should_stop)
