"""Start, stream and stop the child processes the panel launches (generator, trainer, predictor).

Blender's UI thread must never block on a child, so a ``Job`` reads the child's stdout on a
reader thread, parses each line with ``core.protocol.parse_line`` and queues the events; the main
thread drains them with ``poll()`` from a ``bpy.app.timers`` callback. Timers and modal operators
never run in module (background) mode, so ``run_blocking`` offers the same thing as one call.

A child fails when it exits non-zero, emits an ``error`` event, or exits without a ``done``
event; ``JobResult.error`` then holds one line meant for a person (the child's own error message,
or the last line of its stderr, e.g. a traceback's final line).

This module imports no bpy at import time, so it is testable and usable from plain Python.
"""

from __future__ import annotations

import collections
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
from typing import Callable, Sequence

from ..core import protocol
from ..core.protocol import Event

log = logging.getLogger(__name__)

_EOF = object()
STDERR_TAIL_LINES = 40


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
        if self.proc is None or self.proc.stdin is None:
            return False
        try:
            self.proc.stdin.write(line.rstrip("\n") + "\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

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
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for ev in self.poll():
                if on_event is not None:
                    on_event(ev)
            if self.finished:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(interval)

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
    try:
        job.start()
    except RunnerError as exc:
        return JobResult(returncode=None, error=str(exc))
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    try:
        while not job.wait(timeout=0.2, on_event=on_event):
            if should_stop is not None and should_stop():
                job.stop()
            elif deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                job.stop()
    finally:
        if job.running:
            job.stop(grace_s=1.0, term_s=1.0)
        job.close()
    res = job.result()
    if timed_out:
        res.cancelled = False
        res.error = f"{name} timed out after {timeout:.0f} s"
    return res


# -- command lines ------------------------------------------------------------------------------

def package_dir() -> Path:
    """The folder of the top-level package (``blender_instseg`` or ``bl_ext.<repo>.blender_instseg``)."""
    return Path(__file__).resolve().parents[1]


def package_name() -> str:
    """The importable name of the top-level package, e.g. ``bl_ext.user_default.blender_instseg``."""
    return __name__.rsplit(".", 2)[0]


def child_env(extra_path: Sequence[str | os.PathLike[str]] = ()) -> dict[str, str]:
    """The environment for a child: our package's parent folder first on PYTHONPATH, unbuffered output.

    An installed extension's folder is still named ``blender_instseg`` (inside bl_ext/<repo>/), so
    putting its parent on PYTHONPATH makes ``python -m blender_instseg.ml`` work for any interpreter.
    """
    env = dict(os.environ)
    parts = [str(package_dir().parent), *(str(p) for p in extra_path)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ml_argv(python: str, command: str, args: Sequence[str]) -> list[str]:
    """``<python> -u -m blender_instseg.ml <command> ARGS`` (the model process)."""
    leaf = package_dir().name
    return [python, "-u", "-m", f"{leaf}.ml", command, *[str(a) for a in args]]


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
