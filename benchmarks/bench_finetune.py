"""Fine-tuning that pays: the bundled pretrained weights vs random weights on categories they never saw.

The categories are ``shape_families.UNSEEN_FAMILIES`` (cross, arrow, L-bracket, crescent, heart: five
families the pretraining recipe never drew), made by script as an ``--assets`` folder. One training
set and one held-out set of scenes (default look); the default model is trained for 2, 5 and 15
minutes from the bundled weights (``--init bundled``) and from random weights (``--init none``),
same data, seed and settings, and each run is scored on the held-out scenes (mask AP, AP50,
Boundary AP). The goal: the 5-minute fine-tune beats the 15-minute run from scratch.

The two starts of each duration train side by side, one core each (``OMP_NUM_THREADS=1``, no
loader workers), so both see the same machine load. Rerunning the same command resumes (finished
datasets, runs and reports are kept). Prints the table for docs/benchmarks.md and writes OUT/results.json.

  python benchmarks/bench_finetune.py --python-bpy .venv-blender/bin/python --python-torch .venv/bin/python
  python benchmarks/bench_finetune.py --out /tmp/ft --train-images 8 --test-images 4 --resolution 64 \\
      --minutes 0.1 --python-bpy .venv-blender/bin/python --python-torch .venv/bin/python   # a smoke run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_loop import stage  # noqa: E402
from shape_families import write_unseen_families  # noqa: E402

from blender_instseg.core.fileio import atomic_write_json, atomic_write_text, read_json  # noqa: E402
from blender_instseg.pipeline.stages import StageError  # noqa: E402
from blender_instseg.procs.argv import checkout_generate_script, child_env, generator_argv, ml_argv  # noqa: E402

METRICS = ("mask_AP", "mask_AP50", "boundary_AP")
STARTS = {"pretrained": "bundled", "scratch": "none"}


def generate(args: argparse.Namespace, assets: Path, out: Path, n: int, seed: int, val_fraction: float) -> None:
    gen = ["--out", str(out), "--assets", str(assets), "--num-images", str(n), "--seed", str(seed),
           "--resolution", str(args.resolution), "--samples", str(args.samples), "--min-objects", "3",
           "--max-objects", "10", "--val-fraction", str(val_fraction), "--workers", str(args.workers),
           "--progress", "jsonl", "--no-preview"]
    stage(f"generate {out.name}", generator_argv(args.python_bpy, gen, script=checkout_generate_script()))


def train_side_by_side(args: argparse.Namespace, data: Path, runs: dict[str, Path], minutes: float) -> None:
    """Both starts at once, one core each; a finished run is not started again."""
    env = {**child_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for name, run in runs.items():
        if (run / "last.pt").is_file():
            continue
        argv = ml_argv(args.python_torch, "train", [
            "--data", str(data), "--out", str(run), "--minutes", f"{minutes:g}", "--init", STARTS[name],
            "--image-size", str(args.resolution), "--seed", str(args.seed), "--workers", "0", "--device", args.device])
        print(f"== train {name} {minutes:g} min: {' '.join(argv)}", flush=True)
        log = open(run.parent / f"{run.name}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
        procs[name] = (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        if rc != 0:
            raise StageError(f"train {name} exited {rc}; see {runs[name].parent / (runs[name].name + '.log')}")


def evaluate(args: argparse.Namespace, run: Path, test: Path) -> dict[str, Any]:
    report = run / "eval_test"
    if not (report / "metrics.json").is_file():
        stage(f"evaluate {run.name}", ml_argv(args.python_torch, "evaluate", [
            "--checkpoint", str(run / "last.pt"), "--data", str(test), "--out", str(report), "--device", args.device,
            "--no-plots"]))
    metrics = read_json(report / "metrics.json", "metrics")
    return {"mask_AP": metrics.get("segm", {}).get("AP"), "mask_AP50": metrics.get("segm", {}).get("AP50"),
            "boundary_AP": metrics.get("boundary", {}).get("AP"), "steps": last_step(run)}


def last_step(run: Path) -> int | None:
    """The run's final optimizer step, from the last event of events.jsonl that names one."""
    import json

    step = None
    for line in (run / "events.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("step"), int):
            step = event["step"]
    return step


def table(results: dict[str, Any]) -> str:
    lines = ["| start | minutes | steps | mask AP | AP50 | Boundary AP |", "|---|---|---|---|---|---|"]
    for minutes, starts in results["runs"].items():
        for start, m in starts.items():
            cells = [f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "-" for k in METRICS]
            lines.append(f"| {start} | {minutes} | {m.get('steps') or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_finetune", help="work folder (default out/bench_finetune)")
    p.add_argument("--train-images", type=int, default=400, help="training set, train + val (default 400)")
    p.add_argument("--test-images", type=int, default=100, help="held-out scenes (default 100)")
    p.add_argument("--resolution", type=int, default=256, help="square image size and training size (default 256)")
    p.add_argument("--samples", type=int, default=8, help="Cycles samples (default 8)")
    p.add_argument("--minutes", type=float, nargs="+", default=[2.0, 5.0, 15.0], help="training budgets (default 2 5 15)")
    p.add_argument("--seed", type=int, default=0, help="training scenes' and runs' seed; held-out scenes use seed + 1")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="generator processes (default 2)")
    p.add_argument("--python-torch", default=sys.executable)
    p.add_argument("--python-bpy", default=sys.executable)
    args = p.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    assets = out / "assets"
    if not assets.is_dir():
        write_unseen_families(assets, seed=args.seed)
    t0 = time.monotonic()
    results: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "runs": {},
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    try:
        data, test = out / "train", out / "test"
        generate(args, assets, data, args.train_images, args.seed, 0.1)
        generate(args, assets, test, args.test_images, args.seed + 1, 0.0)
        for minutes in args.minutes:
            runs = {name: out / f"run_{name}_{minutes:g}min" for name in STARTS}
            train_side_by_side(args, data, runs, minutes)
            results["runs"][f"{minutes:g}"] = {name: evaluate(args, run, test) for name, run in runs.items()}
    except StageError as exc:
        print(f"bench_finetune: {exc}", file=sys.stderr)
        return 1
    results["seconds"] = round(time.monotonic() - t0, 1)
    text = table(results)
    atomic_write_json(out / "results.json", results, indent=1)
    atomic_write_text(out / "results.md", text + "\n")
    print(f"\n{args.train_images} training images of {len(list(assets.iterdir()))} unseen categories, "
          f"{args.test_images} held-out scenes\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
