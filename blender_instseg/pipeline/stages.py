"""Run one stage (generator, trainer, evaluator) as a child process and follow its JSON-lines events.

Every stage of ``scripts/demo.py`` and of the mining loop is a separate process, exactly as the
Blender panel runs them: the child speaks ``core.protocol`` on stdout, its ``done`` event is the
result, and a non-zero exit, an ``error`` event or a missing ``done`` is a failure with one line
meant for a person. No bpy and no torch here, so this runs under any of the project's interpreters.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Sequence

from ..core import protocol
from ..core.protocol import Event

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0  # after "stop" on stdin, a child gets this long before SIGTERM


class StageError(RuntimeError):
    """A stage failed; the message is one line."""


class StopSignal(threading.Event):
    """Set to ask the running stage to stop cleanly ("stop" on its stdin); ``force`` also terminates it."""

    force = False


def package_dir() -> Path:
    """The folder of the top-level package (``blender_instseg`` in a checkout, also inside an installed extension)."""
    return Path(__file__).resolve().parents[1]


def child_env(extra_path: Sequence[str | os.PathLike[str]] = (), env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child: this package's parent folder first on PYTHONPATH, unbuffered output.

    An installed extension's folder is still named ``blender_instseg`` (inside bl_ext/<repo>/), so
    putting its parent on PYTHONPATH makes ``python -m blender_instseg.ml`` work for any interpreter.
    """
    env = dict(os.environ if env is None else env)
    parts = [str(package_dir().parent), *(str(p) for p in extra_path)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ml_argv(python: str, command: str, args: Sequence[str]) -> list[str]:
    """``<python> -u -m blender_instseg.ml <command> ARGS`` (the model process)."""
    return [python, "-u", "-m", f"{package_dir().name}.ml", command, *[str(a) for a in args]]


def generator_argv(program: str, args: Sequence[str]) -> list[str]:
    """The generator as a child: ``program`` is a Python with the bpy module, or a Blender executable.

    In a checkout ``scripts/generate.py`` is used (it also makes pycocotools/OpenCV importable in a
    Blender binary); without it (an installed extension) a one-line bootstrap imports the package.
    """
    blender = Path(program).name.lower().startswith("blender")
    script = package_dir().parent / "scripts" / "generate.py"
    if script.is_file():
        head = [program, "-b", "--factory-startup", "--python-exit-code", "1", "-P", str(script)] if blender \
            else [program, "-u", str(script)]
    else:
        boot = (f"import sys; sys.path.insert(0, {str(package_dir().parent)!r}); "
                "a = sys.argv[sys.argv.index('--') + 1:]; "
                f"from {package_dir().name}.blender.generate import main; sys.exit(main(a))")
        head = [program, "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr", boot] if blender \
            else [program, "-u", "-c", boot]
    return [*head, "--", *[str(a) for a in args]]


def run_stage(name: str, argv: Sequence[str], on_event: Callable[[Event], None] | None = None, *,
              env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              stop: StopSignal | None = None) -> dict:
    """Run one child to the end; return its ``done`` event data, or raise ``StageError`` (one line).

    Each event goes to ``on_event`` as it arrives. When ``stop`` is set the child gets "stop" on
    stdin (generator and trainer stop cleanly and still send ``done`` with ``stopped: true``);
    SIGTERM follows after ``STOP_GRACE_S``, or at once when ``stop.force``.
    """
    log.debug("%s: %s", name, " ".join(map(str, argv)))
    try:
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
                                env=child_env(env=env), cwd=None if cwd is None else str(cwd))
    except OSError as exc:
        raise StageError(f"stage '{name}' could not start ({argv[0]}): {exc.strerror or exc}") from None
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))

    def watch_stop() -> None:
        assert stop is not None
        stop.wait()
        if proc.poll() is not None:
            return
        protocol.send_line(proc.stdin)
        deadline = time.monotonic() + STOP_GRACE_S
        while proc.poll() is None:
            if stop.force or time.monotonic() > deadline:
                proc.terminate()
                return
            time.sleep(0.1)

    threads = [threading.Thread(target=read_stderr, daemon=True)]
    if stop is not None:
        threads.append(threading.Thread(target=watch_stop, daemon=True))
    for t in threads:
        t.start()
    done: dict | None = None
    error: str | None = None
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = protocol.parse_line(line)
        if ev.event == "done":
            done = ev.data
        elif ev.event == "error" and error is None:
            error = ev.message
        if on_event is not None:
            on_event(ev)
    rc = proc.wait()
    threads[0].join(timeout=2.0)
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    if rc != 0 or done is None or error is not None:
        last = next((ln.strip() for ln in reversed(tail) if ln.strip()), "")
        detail = error or last or f"exit code {rc}"
        raise StageError(f"stage '{name}' failed: {detail}")
    return done


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
