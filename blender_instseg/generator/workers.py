"""``--workers K``: K generator children on this machine, one shard each, writing into the same folder.

Each child renders the indices ``i % K == k`` it has not finished yet and writes its own records, so
the merged dataset is the same as one process's. The children read the settings back from the
folder's config.json (written by the parent first), so they cannot disagree with the parent.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from ..procs.child import Child
from .progress import Progress, StopWatcher

log = logging.getLogger(__name__)


def worker_args(args: argparse.Namespace, index: int, count: int, threads: int, config_path: Path) -> list[str]:
    """The command-line arguments of worker ``index`` of ``count``."""
    child_args = [
        "--out", str(args.out), "--num-images", str(args.num_images), "--seed", str(args.seed),
        "--config", str(config_path), "--shard", str(index), "--num-shards", str(count), "--no-merge",
        "--progress", "jsonl", "--threads", str(threads),
    ]
    if args.variants_of is not None:
        child_args += ["--variants-of", str(args.variants_of.resolve())]
    if args.verbose:
        child_args.append("--verbose")
    return child_args


def run_workers(args: argparse.Namespace, progress: Progress, stop: StopWatcher, config_path: Path,
                command: Callable[[Sequence[str]], list[str]]) -> None:
    """Start ``args.workers`` children and relay their progress; raise RuntimeError (one line) if any failed.

    ``command`` turns a worker's arguments into its full command line (the Blender side knows which
    program a generator child runs). A "stop" seen by ``stop`` is passed on to every child.
    """
    k = args.workers
    cores = os.cpu_count() or 1
    threads = args.threads or max(1, cores // k)
    workers: list[Child] = []
    for i in range(k):
        argv = command(worker_args(args, i, k, threads, config_path))
        workers.append(Child(argv, name=f"worker {i}", require_done=False).start())
    errors: list[str] = []
    stop_sent = False
    try:
        while True:
            if stop.stopped and not stop_sent:
                for w in workers:
                    w.send("stop")
                stop_sent = True
            for i, w in enumerate(workers):
                for ev in w.poll():
                    if ev.event == "progress" and ev.get("index") is not None:
                        progress.step(index=ev.get("index"), worker=i)
                    elif ev.event == "error":
                        errors.append(f"worker {i}: {ev.message}")
                    elif ev.event == "log" and ev.message:
                        log.debug("worker %d: %s", i, ev.message)
            if all(w.finished for w in workers):
                break
            time.sleep(0.05)
    finally:
        for w in workers:
            w.close()
    for i, w in enumerate(workers):
        rc = w.returncode
        if rc != 0 and not any(e.startswith(f"worker {i}:") for e in errors):
            tail = next((ln.rstrip() for ln in reversed(w.stderr_tail().splitlines()) if ln.strip()), "no message")
            errors.append(f"worker {i} exited with code {rc}: {tail}")
    if errors:
        raise RuntimeError(errors[0] + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
