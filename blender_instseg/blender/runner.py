"""Start, stream and stop the child processes the panel launches (generator, trainer, predictor).

Blender's UI thread must never block on a child, so a ``Job`` reads the child's stdout on a
reader thread, parses each line with ``core.protocol.parse_line`` and queues the events; the main
thread drains them with ``poll()`` from a ``bpy.app.timers`` callback. Timers and modal operators
never run in module (background) mode, so ``run_blocking`` offers the same thing as one call.

A child fails when it exits non-zero, emits an ``error`` event, or exits without a ``done``
event; ``JobResult.error`` then holds one line meant for a person (the child's own error message,
or the last line of its stderr, e.g. a traceback's final line).

A ``Server`` is a child that stays alive between requests (``ml predict --serve``): Predict View
keeps one warm in ``SERVERS`` so a click pays for inference only, not for starting Python, importing
torch and loading the checkpoint. A ``ServerCall`` is one request to it, shaped like a ``Job``
(``poll``/``finished``/``result``/``stop``), so the blocking path and the timer path drive both
the same way.

This module imports no bpy at import time, so it is testable and usable from plain Python.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Protocol, Sequence

from ..core import protocol
from ..core.protocol import Event
from ..pipeline.stages import child_env, ml_argv, package_dir  # noqa: F401  (the command-line helpers, shared)

log = logging.getLogger(__name__)

_EOF = object()
STDERR_TAIL_LINES = 40



def _drain(job: "Drivable", timeout: float | None, interval: float,
           on_event: Callable[[Event], None] | None) -> bool:
    """Poll ``job`` (a Job or ServerCall) until it has finished or ``timeout`` passed; True when finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for ev in job.poll():
            if on_event is not None:
                on_event(ev)
        if job.finished:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)

class RunnerError(RuntimeError):
    """A child could not be started (missing interpreter, bad working directory, ...)."""


@dataclass
class JobResult:
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


class Job:
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
    def start(self) -> "Job":
        if self.proc is not None:
            raise RunnerError(f"{self.name} already started")
        env = None
        if self.env is not None:
            env = dict(self.env)
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace", bufsize=1, env=env, cwd=self.cwd,
            )
        except OSError as exc:
            raise RunnerError(f"cannot start {self.name} ({self.argv[0]}): {exc.strerror or exc}") from None
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

    # -- main-thread API ---------------------------------------------------------------------
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

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        with self._lock:
            return "\n".join(list(self._stderr)[-lines:])

    def send(self, line: str) -> bool:
        """Write one line to the child's stdin; False when the pipe is already gone."""
        return protocol.send_line(self.proc.stdin if self.proc is not None else None, line)

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
        return _drain(self, timeout, interval, on_event)

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

    def result(self) -> JobResult:
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
            error = _last_line(self.stderr_tail()) or _last_line("\n".join(st.logs)) or ""
            error = f"{self.name} failed (exit code {rc})" + (f": {error}" if error else "")
        elif st.done is None and self.require_done:
            detail = _last_line(self.stderr_tail()) or _last_line("\n".join(st.logs))
            error = f"{self.name} exited without finishing" + (f": {detail}" if detail else "")
        return JobResult(returncode=rc, done=st.done, error=error, cancelled=self.cancelled,
                         stderr_tail=self.stderr_tail(), events=st.n_events)


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            return line[:500]
    return ""


class Drivable(Protocol):
    """What ``drive`` and ``ops.jobs`` need from a child: a ``Job`` or a ``ServerCall``."""

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
    def result(self) -> JobResult: ...


def drive(job: Drivable, on_event: Callable[[Event], None] | None = None, *, name: str = "job",
          timeout: float | None = None, should_stop: Callable[[], bool] | None = None) -> JobResult:
    """Start ``job`` and drive it to the end in the calling thread (see ``run_blocking``)."""
    try:
        job.start()
    except RunnerError as exc:
        return JobResult(returncode=None, error=str(exc))
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            for ev in job.poll():
                if on_event is not None:
                    on_event(ev)
            if job.finished:
                break
            if should_stop is not None and should_stop():
                job.stop()
            elif deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                job.stop()
            else:
                time.sleep(0.02)
    finally:
        if job.running:
            job.stop(grace_s=1.0, term_s=1.0)
        job.close()
    res = job.result()
    if timed_out:
        res.cancelled = False
        res.error = f"{name} timed out after {timeout:.0f} s"
    return res


def run_blocking(argv: Sequence[str], on_event: Callable[[Event], None] | None = None, *,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 name: str = "job", timeout: float | None = None,
                 should_stop: Callable[[], bool] | None = None, require_done: bool = True) -> JobResult:
    """Run a child to the end in the calling thread, handing each event to ``on_event``.

    Used in background mode (tests, scripts), where timers never fire. ``timeout`` stops the child
    (stop, terminate, kill) and reports it as an error; so does ``should_stop()`` returning True,
    which counts as a cancel. A child that cannot be started gives an error result, not an exception.
    ``require_done=False`` is for plain CLIs that print no protocol events (exit 0 = success).
    """
    job = Job(argv, env=env, cwd=cwd, name=name, require_done=require_done)
    return drive(job, on_event, name=name, timeout=timeout, should_stop=should_stop)


# -- warm servers -------------------------------------------------------------------------------

READY_MESSAGE = "ready"  # the log message a serving child emits once its model is loaded


class Server:
    """A long-lived child answering JSON-line requests on stdin with ``result``/``error`` events carrying their id.

    Requests are written as soon as the process starts: they wait in the stdin pipe while the
    child loads its model, so nobody has to block on "ready". Only one request is in flight at a
    time (``ops.jobs`` runs one job at a time), and whoever drives that request drains the events.
    """

    def __init__(self, argv: Sequence[str], key: Hashable, *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, name: str = "predict server") -> None:
        self.key = key
        self.job = Job(argv, env=env, cwd=cwd, name=name, require_done=False)
        self.ready = False
        self.served = 0
        self.retired = False  # asked to stop (cancel): never handed out again
        self._ids = itertools.count(1)

    def start(self) -> "Server":
        self.job.start()
        return self

    @property
    def pid(self) -> int | None:
        return None if self.job.proc is None else self.job.proc.pid

    @property
    def alive(self) -> bool:
        return self.job.running and not self.retired

    def request(self, **fields: Any) -> int | None:
        """Send one ``predict`` request; its id, or None when the child's stdin is gone."""
        rid = next(self._ids)
        line = json.dumps({"cmd": "predict", "id": rid, **fields}, separators=(",", ":"))
        return rid if self.job.send(line) else None

    def stop(self, grace_s: float = 2.0, term_s: float = 2.0) -> int | None:
        """Stop (``stop`` line, then SIGTERM, then SIGKILL) and release the pipes."""
        self.retired = True
        code = self.job.stop(grace_s=grace_s, term_s=term_s)
        self.job.close()
        return code


class ServerPool:
    """At most one warm server per key; a different key stops the old one first (one model in memory)."""

    def __init__(self) -> None:
        self._server: Server | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> Server | None:
        return self._server

    def get(self, key: Hashable, argv: Sequence[str], *, env: dict[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None) -> tuple[Server, bool]:
        """(server, started_now): the warm server for ``key``, or a freshly started one."""
        with self._lock:
            old = self._server
            if old is not None and old.key == key and old.alive:
                return old, False
            self._server = None
        if old is not None:
            old.stop()
        server = Server(argv, key, env=env, cwd=cwd).start()  # RunnerError propagates
        with self._lock:
            self._server = server
        return server, True

    def discard(self, server: Server) -> None:
        """Stop ``server`` and forget it if it is the pooled one."""
        with self._lock:
            if self._server is server:
                self._server = None
        server.stop(grace_s=1.0, term_s=1.0)

    def forget(self, server: Server) -> None:
        """Drop ``server`` from the pool without waiting for it (it was told to stop and exits by itself)."""
        with self._lock:
            if self._server is server:
                self._server = None

    def stop_all(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()


SERVERS = ServerPool()  # module-level: lives across operator calls; stopped by ops.jobs.shutdown()


class ServerCall:
    """One request to the pooled server for ``key``, driven like a ``Job``.

    - The server is started when there is none for ``key`` (first click: the cold start).
    - A child that exits before "ready" with an ``error`` event (no torch, bad checkpoint) fails
      the call with that message, as the one-shot command would.
    - A child that exits before "ready" without one (e.g. a Python whose predictor has no
      ``--serve``) is not a server: the call runs ``fallback_argv`` (the one-shot command) instead.
    - A server that dies while answering is restarted once and the request sent again; a second
      death fails the call with the child's last stderr line.
    - ``timeout`` (seconds, from ``start``) stops the server and fails the call.
    - ``send("stop")`` (Cancel) retires the server: it finishes its request, then exits.

    ``result().done`` is the server's ``result`` event, renamed ``done`` so finish hooks see the same
    shape as a one-shot child's.
    """

    def __init__(self, pool: ServerPool, key: Hashable, argv: Sequence[str], request: dict[str, Any], *,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 fallback_argv: Sequence[str] | None = None, name: str = "predict",
                 timeout: float | None = 300.0) -> None:
        self.pool, self.key, self.argv, self.request = pool, key, list(argv), dict(request)
        self.env, self.cwd, self.name, self.timeout = env, cwd, name, timeout
        self.fallback_argv = None if fallback_argv is None else list(fallback_argv)
        self.cancelled = False
        self.server: Server | None = None
        self.started_server = False  # this call paid the cold start
        self.restarts = 0
        self.fallback: Job | None = None
        self._rid: int | None = None
        self._startup_error: Event | None = None
        self._answer: Event | None = None
        self._error: str | None = None
        self._deadline: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "ServerCall":
        self._deadline = None if self.timeout is None else time.monotonic() + self.timeout
        self._attach()
        return self

    def _attach(self) -> None:
        server, fresh = self.pool.get(self.key, self.argv, env=self.env, cwd=self.cwd)
        self.server, self._startup_error = server, None
        self.started_server = self.started_server or fresh
        self._rid = server.request(**self.request)
        # rid None: stdin already closed, the child is on its way out; poll() sees it exit.

    @property
    def proc(self) -> "subprocess.Popen[str] | None":
        if self.fallback is not None:
            return self.fallback.proc
        return None if self.server is None else self.server.job.proc

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return None if proc is None else proc.pid

    @property
    def finished(self) -> bool:
        if self.fallback is not None:
            return self.fallback.finished
        return self._answer is not None or self._error is not None or (self.cancelled and not self._server_running())

    @property
    def running(self) -> bool:
        """Only a one-shot fallback is ours to stop when the caller gives up; the warm server stays."""
        return self.fallback is not None and self.fallback.running

    def _server_running(self) -> bool:
        return self.server is not None and self.server.job.running

    def poll(self) -> list[Event]:
        if self.fallback is not None:
            return self.fallback.poll()
        if self.server is None or self.finished:
            return []
        job = self.server.job
        out: list[Event] = []
        for ev in job.poll():
            mine = ev.get("id") == self._rid and self._rid is not None
            if ev.event == "log" and ev.message == READY_MESSAGE:
                self.server.ready = True
            elif ev.event == "result" and mine:
                self.server.served += 1
                self._answer = ev
            elif ev.event == "error" and mine:
                self._error = ev.message or "the predictor reported an error"
            elif ev.event == "error" and not self.server.ready and self._startup_error is None:
                self._startup_error = ev
            out.append(ev)
        if self._answer is None and self._error is None and job.finished:
            self._server_exited()
        elif self._answer is None and self._error is None and self._deadline is not None \
                and time.monotonic() >= self._deadline:
            self.pool.discard(self.server)
            self._error = f"{self.name} timed out after {self.timeout:.0f} s"
        return out

    def _server_exited(self) -> None:
        assert self.server is not None
        server = self.server
        self.pool.discard(server)  # reaps the process, joins its readers
        if self.cancelled:
            return
        if self._startup_error is not None:
            self._error = self._startup_error.message or f"{self.name} failed to start"
        elif not server.ready and self.fallback_argv is not None:
            log.info("%s: %s exited before serving (exit code %s); running the one-shot command",
                     self.name, server.job.name, server.job.returncode)
            self.fallback = Job(self.fallback_argv, env=self.env, cwd=self.cwd, name=self.name)
            try:
                self.fallback.start()
            except RunnerError as exc:
                self.fallback = None
                self._error = str(exc)
        elif self.restarts < 1:
            self.restarts += 1
            log.warning("%s: server exited (code %s) before answering; restarting it once",
                        self.name, server.job.returncode)
            try:
                self._attach()
            except RunnerError as exc:
                self._error = str(exc)
        else:
            detail = _last_line(server.job.stderr_tail())
            self._error = (f"{self.name} server exited (exit code {server.job.returncode}) before answering"
                           + (f": {detail}" if detail else ""))

    def send(self, line: str) -> bool:
        """Forward a line; ``stop`` also retires the server so the next click starts a fresh one."""
        if self.fallback is not None:
            return self.fallback.send(line)
        if self.server is None:
            return False
        if protocol.is_stop_command(line):
            self.cancelled = True
            self.server.retired = True
        return self.server.job.send(line)

    def stop(self, grace_s: float = 10.0, term_s: float = 5.0) -> int | None:
        """Give up on this call: stop the one-shot fallback, or the server itself (shutdown, cancel)."""
        self.cancelled = True
        if self.fallback is not None:
            return self.fallback.stop(grace_s, term_s)
        if self.server is None:
            return None
        self.pool.discard(self.server)
        return self.server.job.returncode

    def wait(self, timeout: float | None = None, interval: float = 0.02,
             on_event: Callable[[Event], None] | None = None) -> bool:
        return _drain(self, timeout, interval, on_event)

    def close(self) -> None:
        """Release a fallback's pipes; a warm server stays open for the next call."""
        if self.fallback is not None:
            self.fallback.close()
        elif self.server is not None and self.server.retired:
            self.pool.forget(self.server)  # cancelled: it got "stop" and exits; the UI does not wait for it

    def result(self) -> JobResult:
        if self.fallback is not None:
            return self.fallback.result()
        rc = None if self.server is None else self.server.job.returncode
        tail = "" if self.server is None else self.server.job.stderr_tail()
        if self._answer is not None:
            return JobResult(returncode=0, done=Event("done", dict(self._answer.data)), cancelled=self.cancelled,
                             stderr_tail=tail, events=1)
        if self._error is not None:
            return JobResult(returncode=rc, error=self._error, cancelled=self.cancelled, stderr_tail=tail)
        if self.cancelled:
            return JobResult(returncode=rc, cancelled=True, stderr_tail=tail)
        return JobResult(returncode=rc, error=f"{self.name} is still running", stderr_tail=tail)


# -- command lines ------------------------------------------------------------------------------

def package_name() -> str:
    """The importable name of the top-level package, e.g. ``bl_ext.user_default.blender_instseg``."""
    return __name__.rsplit(".", 2)[0]


def core_argv(python: str, command: str, args: Sequence[str]) -> list[str]:
    """``<python> -u -m blender_instseg.core <command> ARGS`` (bpy-free tools such as evaluate)."""
    leaf = package_dir().name
    return [python, "-u", "-m", f"{leaf}.core", command, *[str(a) for a in args]]


_BOOTSTRAP = '''\
"""Written by blender_instseg's runner: run the add-on's generator in this (child) Blender."""
import importlib, sys
PKG = {pkg!r}
PARENT = {parent!r}
LEAF = {leaf!r}
try:
    mod = importlib.import_module(PKG + ".blender.generate")
except ImportError:
    if PARENT not in sys.path:
        sys.path.insert(0, PARENT)
    mod = importlib.import_module(LEAF + ".blender.generate")
argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
sys.exit(mod.main(argv))
'''


def write_generate_bootstrap(folder: str | os.PathLike[str] | None = None) -> Path:
    """Write the tiny script that imports the installed add-on's ``generate.main`` in a child."""
    pkg_dir = package_dir()
    text = _BOOTSTRAP.format(pkg=package_name(), parent=str(pkg_dir.parent), leaf=pkg_dir.name)
    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    path = folder / "instseg_generate_boot.py"
    from ..core.fileio import atomic_write_text

    atomic_write_text(path, text)
    return path


def generate_argv(args: Sequence[str], *, binary_path: str | None = None,
                  bootstrap_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The command line that runs the generator in a child process.

    Inside a Blender binary (``bpy.app.binary_path`` set) the child is that binary in background
    mode running a bootstrap script; in module mode (``import bpy`` in a normal Python) it is
    ``sys.executable`` running the same bootstrap. Either way the add-on's own code generates, so
    an installed extension (where ``scripts/`` is not shipped) works the same as a checkout.
    """
    if binary_path is None:
        try:
            import bpy  # noqa: PLC0415 - only the Blender process has it

            binary_path = bpy.app.binary_path or ""
        except ImportError:
            binary_path = ""
    boot = write_generate_bootstrap(bootstrap_dir)
    if binary_path:
        return [binary_path, "-b", "--python-exit-code", "1", "-P", str(boot), "--", *[str(a) for a in args]]
    return [sys.executable, "-u", str(boot), "--", *[str(a) for a in args]]
