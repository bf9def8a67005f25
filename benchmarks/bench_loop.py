"""Hard-scene mining vs random new scenes at equal image count: held-out mask AP after each round.

One base set (train + val split; val is what ``hard`` mines), one fixed held-out set (never mined,
only scored), one base model; then ``python -m blender_instseg.pipeline loop`` twice from the same
starting checkpoint, ``--strategy hard`` and ``--strategy random``, with the same rounds, images per
round and fine-tuning steps per round (steps, not minutes, so machine load cannot change the
result). Prints the table for docs/benchmarks.md ("Hard-scene mining loop") and writes
OUT/results.json. Every stage is a child process; rerunning the same command resumes (finished datasets, runs and rounds are kept).

  python benchmarks/bench_loop.py --out out/bench_loop                      # the default benchmark
  python benchmarks/bench_loop.py --out /tmp/bl --base-images 12 --heldout-images 4 --resolution 64 \\
      --masks-only --base-steps 10 --rounds 2 --budget 4 --steps-per-round 3   # a smoke run (minutes)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blender_instseg.core.fileio import atomic_write_json, atomic_write_text, read_json  # noqa: E402
from blender_instseg.pipeline.stages import StageError, print_events, run_stage  # noqa: E402
from blender_instseg.procs.argv import checkout_generate_script, generator_argv, ml_argv  # noqa: E402


def stage(name: str, argv: list[str]) -> dict:
    print(f"== {name}: {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    done = run_stage(name, argv, print_events(name), cwd=ROOT)
    print(f"   {name}: {time.monotonic() - t0:.1f} s", flush=True)
    return done


def generate(args: argparse.Namespace, out: Path, n: int, seed: int, val_fraction: float) -> None:
    gen = ["--out", str(out), "--num-images", str(n), "--seed", str(seed), "--resolution", str(args.resolution),
           "--min-objects", str(args.min_objects), "--max-objects", str(args.max_objects),
           "--val-fraction", str(val_fraction), "--workers", str(args.workers), "--progress", "jsonl", "--no-preview"]
    gen += ["--masks-only"] if args.masks_only else ["--samples", str(args.samples)]
    stage(f"generate {out.name}", generator_argv(args.python_bpy, gen, script=checkout_generate_script()))


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per round (0 = the starting model), one column group per strategy."""
    strategies = list(results["strategies"])
    head = "| round | images added | " + " | ".join(f"{s} mask AP | {s} AP50 | {s} Boundary AP" for s in strategies) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(strategies))]
    n_rounds = max(len(v["rounds"]) for v in results["strategies"].values())
    for r in range(n_rounds + 1):
        cells = [str(r), str(r * results["budget"])]
        for s in strategies:
            rows = results["strategies"][s]["rounds"]
            m = results["start"] if r == 0 else (rows[r - 1] if r - 1 < len(rows) else None)
            for key in ("mask_AP", "mask_AP50", "boundary_AP"):
                v = (m or {}).get(key)
                cells.append(f"{v:.3f}" if isinstance(v, (int, float)) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_loop", help="benchmark folder (default out/bench_loop)")
    p.add_argument("--base-images", type=int, default=400, help="base set size, train + val (default 400)")
    p.add_argument("--val-fraction", type=float, default=0.25, help="base set's val split, the mining set (default 0.25)")
    p.add_argument("--heldout-images", type=int, default=150, help="fixed held-out set size (default 150)")
    p.add_argument("--resolution", type=int, default=128, help="square image size (default 128)")
    p.add_argument("--samples", type=int, default=8, help="Cycles samples for RGB (default 8)")
    p.add_argument("--masks-only", action="store_true", help="1-sample clay images (fast; for smoke runs)")
    p.add_argument("--min-objects", type=int, default=3)
    p.add_argument("--max-objects", type=int, default=10)
    p.add_argument("--base-steps", type=int, default=1500, help="training steps of the starting model (default 1500)")
    p.add_argument("--rounds", type=int, default=3, help="mining rounds (default 3)")
    p.add_argument("--budget", type=int, default=60, help="new images per round (default 60)")
    p.add_argument("--steps-per-round", type=int, default=400, help="fine-tuning steps per round (default 400)")
    p.add_argument("--per-seed", type=int, default=4, help="variants per mined seed (default 4)")
    p.add_argument("--strategies", nargs="+", default=["hard", "random"], choices=["hard", "random"])
    p.add_argument("--image-size", type=int, default=None, help="training size (default: --resolution)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="generator processes")
    p.add_argument("--seed", type=int, default=0, help="base set seed; the held-out set uses seed + 1")
    p.add_argument("--python-torch", default=sys.executable)
    p.add_argument("--python-bpy", default=sys.executable)
    args = p.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data, heldout, base = out / "base_data", out / "heldout", out / "base_run"
    image_size = args.image_size or args.resolution
    t0 = time.monotonic()
    try:
        generate(args, data, args.base_images, args.seed, args.val_fraction)
        generate(args, heldout, args.heldout_images, args.seed + 1, 0.0)
        train = ["--data", str(data), "--out", str(base), "--steps", str(args.base_steps), "--device", args.device,
                 "--image-size", str(image_size), "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
        if (base / "last.pt").is_file():
            train.append("--resume")  # finished or not: train stops at --steps
        else:
            train += ["--init", "none"]  # the base model as the loop's numbers were measured: from scratch
        stage("train base", ml_argv(args.python_torch, "train", train))
        for strategy in args.strategies:
            stage(f"loop {strategy}", [args.python_torch, "-u", "-m", "blender_instseg.pipeline", "loop",
                                       "--data", str(data), "--run", str(out / strategy),
                                       "--init", str(base / "last.pt"), "--rounds", str(args.rounds),
                                       "--budget", str(args.budget), "--steps-per-round", str(args.steps_per_round),
                                       "--per-seed", str(args.per_seed), "--strategy", strategy,
                                       "--heldout", str(heldout), "--device", args.device, "--seed", str(args.seed),
                                       "--python-torch", args.python_torch, "--python-bpy", args.python_bpy,
                                       "--generator-workers", str(args.workers)])
    except StageError as exc:
        print(f"bench_loop: {exc}", file=sys.stderr)
        return 1
    results: dict[str, Any] = {"command": " ".join([sys.executable, *sys.argv]), "budget": args.budget,
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                               "strategies": {}, "start": None, "seconds": round(time.monotonic() - t0, 1)}
    for strategy in args.strategies:
        state = read_json(out / strategy / "loop.json", "loop state")
        results["start"] = results["start"] or state["start"].get("metrics")
        results["strategies"][strategy] = {
            "rounds": [rd.get("heldout_after") for rd in state["rounds"] if rd.get("status") == "done"],
            "seconds": [rd.get("seconds") for rd in state["rounds"]],
            "mined": [[(p["seed"], p["count"], round(p["why"]["score"], 3)) for p in rd["stages"]["plan"]["plan"]]
                      for rd in state["rounds"]],
        }
    text = table(results)
    atomic_write_json(out / "results.json", results, indent=1)
    atomic_write_text(out / "results.md", text + "\n")
    print("\nheld-out mask AP per round (" + f"{args.heldout_images} held-out images, {args.budget} new images "
          f"and {args.steps_per_round} steps per round)\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
