"""The generator's side of the JSON-lines protocol: progress out (bar, events or nothing), "stop" in."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from ..core import protocol


class Progress:
    """Terminal bar, JSON-lines protocol events, or nothing."""

    def __init__(self, mode: str, total: int, stream: IO[str] | None = None) -> None:
        self.mode = mode
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self.stream = stream or sys.stdout

    def step(self, n: int = 1, **extra: Any) -> None:
        self.done += n
        self.emit(**extra)

    def emit(self, **extra: Any) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        if self.mode == "jsonl":
            protocol.emit("progress", self.stream, step=self.done, total=self.total, images_per_s=round(rate, 3),
                          eta_s=None if eta is None else round(eta, 1), phase="render", **extra)
        elif self.mode == "bar":
            width = 30
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            eta_s = "?" if eta is None else f"{eta:.0f}s"
            sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {rate:.2f} img/s ETA {eta_s} ")
            sys.stderr.flush()
            if self.done >= self.total:
                sys.stderr.write("\n")

    def finish(self) -> None:
        if self.mode == "bar" and self.done < self.total:
            sys.stderr.write("\n")


class StopWatcher:
    """Reads stdin on a daemon thread; a protocol 'stop' line asks the loop to stop after the current image."""

    def __init__(self, enabled: bool) -> None:
        self.event = threading.Event()
        if enabled and sys.stdin is not None and not sys.stdin.isatty():
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for line in sys.stdin:
                if protocol.is_stop_command(line):
                    self.event.set()
                    return
        except (OSError, ValueError):
            return

    @property
    def stopped(self) -> bool:
        return self.event.is_set()
