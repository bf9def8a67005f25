"""A child that stays alive between requests (``ml predict --serve``), and one request to it.

Predict View keeps one ``Server`` warm (the pool instance lives on the Blender side, in
``blender.children.SERVERS``) so a click pays for inference only, not for starting Python,
importing torch and loading the checkpoint. A ``ServerCall`` is one request to the pooled server,
shaped like a ``child.Child`` (``poll``/``finished``/``result``/``stop``), so the blocking path and
the timer path drive both the same way.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import threading
import time
from typing import Any, Callable, Hashable, Sequence

from ..core import protocol
from ..core.protocol import Event
from .child import Child, ChildResult, ChildStartError, drain, last_line

log = logging.getLogger(__name__)

READY_MESSAGE = "ready"  # the log message a serving child emits once its model is loaded


class Server:
    """A long-lived child answering JSON-line requests on stdin with ``result``/``error`` events carrying their id.

    Requests are written as soon as the process starts: they wait in the stdin pipe while the
    child loads its model, so nobody has to block on "ready". Only one request is in flight at a
    time (the operators run one job at a time), and whoever drives that request drains the events.
    """

    def __init__(self, argv: Sequence[str], key: Hashable, *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, name: str = "predict server") -> None:
        self.key = key
        self.job = Child(argv, env=env, cwd=cwd, name=name, require_done=False)
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
        server = Server(argv, key, env=env, cwd=cwd).start()  # ChildStartError propagates
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


class ServerCall:
    """One request to the pooled server for ``key``, driven like a ``Child``.

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
        self.fallback: Child | None = None
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
            self.fallback = Child(self.fallback_argv, env=self.env, cwd=self.cwd, name=self.name)
            try:
                self.fallback.start()
            except ChildStartError as exc:
                self.fallback = None
                self._error = str(exc)
        elif self.restarts < 1:
            self.restarts += 1
            log.warning("%s: server exited (code %s) before answering; restarting it once",
                        self.name, server.job.returncode)
            try:
                self._attach()
            except ChildStartError as exc:
                self._error = str(exc)
        else:
            detail = last_line(server.job.stderr_tail())
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
        return drain(self, timeout, interval, on_event)

    def close(self) -> None:
        """Release a fallback's pipes; a warm server stays open for the next call."""
        if self.fallback is not None:
            self.fallback.close()
        elif self.server is not None and self.server.retired:
            self.pool.forget(self.server)  # cancelled: it got "stop" and exits; the UI does not wait for it

    def result(self) -> ChildResult:
        if self.fallback is not None:
            return self.fallback.result()
        rc = None if self.server is None else self.server.job.returncode
        tail = "" if self.server is None else self.server.job.stderr_tail()
        if self._answer is not None:
            return ChildResult(returncode=0, done=Event("done", dict(self._answer.data)), cancelled=self.cancelled,
                             stderr_tail=tail, events=1)
        if self._error is not None:
            return ChildResult(returncode=rc, error=self._error, cancelled=self.cancelled, stderr_tail=tail)
        if self.cancelled:
            return ChildResult(returncode=rc, cancelled=True, stderr_tail=tail)
        return ChildResult(returncode=rc, error=f"{self.name} is still running", stderr_tail=tail)
