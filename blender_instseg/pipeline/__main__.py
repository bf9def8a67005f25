"""``python -m blender_instseg.pipeline loop ...``: the hard-scene mining loop (see docs/loop.md).

Exit codes: 0 done (or stopped on request: rerun the same command to continue), 1 a stage failed,
2 bad arguments or an unusable run folder. Progress is ``core.protocol`` JSON lines on stdout;
"stop" on stdin (or SIGTERM/SIGINT) stops the running stage cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from ..core import protocol
from ..core.fileio import temp_target
from .loop import STRATEGIES, Loop, LoopConfig, LoopError
from .stages import StageError, StopSignal

EPILOG = """\
example (hard mining vs the random baseline, 3 rounds of 40 images, 300 steps each):
  python -m blender_instseg.ml train --data out/ds --out out/base --steps 2000
  python -m blender_instseg.pipeline loop --data out/ds --run out/hard --init out/base/last.pt \\
      --rounds 3 --budget 40 --steps-per-round 300 --heldout out/heldout
  python -m blender_instseg.pipeline loop --data out/ds --run out/random --init out/base/last.pt \\
      --rounds 3 --budget 40 --steps-per-round 300 --heldout out/heldout --strategy random
Rerun the same command to continue a stopped or killed loop; raise --rounds to add rounds.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise LoopError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m blender_instseg.pipeline", description="Multi-stage jobs over the generator and "
                "the model, each stage a child process.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    lp = sub.add_parser("loop", help="hard-scene mining: evaluate, rank, render variants of the worst, fine-tune",
                        description="Hard-scene mining loop: each round evaluates the current model on DATASET's val "
                        "split, renders BUDGET new training images (variants of the worst images' scenes, or random "
                        "scenes as a baseline) and fine-tunes from the current checkpoint. Every round is recorded in "
                        "RUN_DIR/loop.json.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lp.add_argument("--data", required=True, metavar="DATASET",
                    help="generated dataset with train and val splits; val is the mining set")
    lp.add_argument("--run", required=True, metavar="RUN_DIR", help="folder for loop.json and round_N/ (created)")
    lp.add_argument("--rounds", type=int, default=1, metavar="R", help="total rounds (default 1; finished ones are kept)")
    lp.add_argument("--budget", type=int, default=20, metavar="N", help="new training images per round (default 20)")
    lp.add_argument("--strategy", choices=STRATEGIES, default="hard",
                    help="hard: variants of the worst seeds (default); random: fresh scenes (the baseline)")
    lp.add_argument("--steps-per-round", type=int, default=200, metavar="S",
                    help="optimizer steps of each round's fine-tuning (default 200)")
    lp.add_argument("--heldout", metavar="DATASET2",
                    help="fixed held-out set, evaluated after every round for the report; never mined")
    lp.add_argument("--init", metavar="CKPT", help="starting checkpoint (default RUN_DIR/last.pt)")
    lp.add_argument("--per-seed", type=int, default=4, metavar="V",
                    help="variants per mined seed: ceil(N/V) worst images are mined (default 4)")
    lp.add_argument("--score-threshold", type=float, default=0.3,
                    help="predictions below this score do not count when ranking images (default 0.3)")
    lp.add_argument("--image-size", type=int, help="training size (default: the starting run's)")
    lp.add_argument("--batch-size", type=int, help="training batch size (default: the starting run's)")
    lp.add_argument("--lr", type=float, help="peak learning rate of each round (default: the starting run's)")
    lp.add_argument("--seed", type=int, default=0, help="training seed of every round (default 0)")
    lp.add_argument("--device", default="auto", help="auto, cpu or cuda for training and evaluation")
    lp.add_argument("--python-torch", default=sys.executable, metavar="PY",
                    help="Python with torch for ml train/evaluate (default: this interpreter)")
    lp.add_argument("--python-bpy", default=sys.executable, metavar="PY",
                    help="Python with the bpy module, or a Blender executable, for the generator (default: this "
                         "interpreter)")
    lp.add_argument("--generator-cmd", metavar="JSON",
                    help="the generator's command prefix as a JSON list, overriding --python-bpy (the Blender "
                         "panel passes its own)")
    lp.add_argument("--generator-workers", type=int, default=1, metavar="K", help="generator processes (default 1)")
    lp.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return p


def config_from_args(args: argparse.Namespace) -> LoopConfig:
    gen_cmd = None
    if args.generator_cmd:
        try:
            gen_cmd = json.loads(args.generator_cmd)
        except json.JSONDecodeError:
            gen_cmd = None
        if not isinstance(gen_cmd, list) or not gen_cmd or not all(isinstance(a, str) for a in gen_cmd):
            raise LoopError("--generator-cmd must be a JSON list of strings, e.g. '[\"blender\", \"-b\", ...]'")
    return LoopConfig(data=args.data, run=args.run, rounds=args.rounds, budget=args.budget, strategy=args.strategy,
                      steps_per_round=args.steps_per_round, heldout=args.heldout, init=args.init,
                      per_seed=args.per_seed, score_threshold=args.score_threshold, image_size=args.image_size,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                      python_torch=args.python_torch, python_bpy=args.python_bpy, generator_cmd=gen_cmd,
                      generator_workers=args.generator_workers).check()


def _watch_stdin(stop: StopSignal) -> None:
    try:
        for line in sys.stdin:
            if protocol.is_stop_command(line):
                stop.set()
                return
    except (OSError, ValueError):
        return


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s: %(message)s")
    stop = StopSignal()
    try:
        args = build_parser().parse_args(argv)
        cfg = config_from_args(args)
        loop = Loop(cfg, stop=stop)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except (LoopError, ValueError, OSError) as exc:
        return _fail(_message(exc), 2)

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            stop.force = True  # a second signal: terminate the running stage now
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if sys.stdin is not None and not sys.stdin.isatty():
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    try:
        result = loop.run()
    except (StageError, LoopError, ValueError, OSError) as exc:
        return _fail(_message(exc), 1)
    protocol.emit("done", **result)
    return 0


def _message(exc: BaseException) -> str:
    """One line for a person: an OSError as what failed on which file (never ``[Errno N]``, never the
    hidden temporary name of an atomic write: the file it stands for)."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is not None:
        target = temp_target(exc.filename)
        what = (exc.strerror or type(exc).__name__).rstrip(".").lower()
        return f"{what}: {target if target is not None else exc.filename}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fail(message: str, code: int) -> int:
    protocol.emit("error", message=message)
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
