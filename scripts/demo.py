"""The main job on a small default: generate -> train -> evaluate -> predict one view in Blender.

Every stage is a separate process, exactly as the Blender panel runs them, and each stage streams the
JSON-lines events of ``blender_instseg.core.protocol``; this script prints them as one-line updates.
Run it with the Blender side's Python (bpy): generate and predict-view run on it, train and evaluate
on ``--torch-python``, as the add-on's "Python with torch" preference does.
Usage: ``python scripts/demo.py --out out/demo --torch-python PY`` (``make demo`` runs it with
.venv-blender's Python 3.13 / bpy 5.3 and .venv's Python 3.11 / torch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_instseg.pipeline.stages import StageError, print_events  # noqa: E402
from blender_instseg.pipeline.stages import run_stage as _run_stage  # noqa: E402
from blender_instseg.procs.argv import child_env  # noqa: E402


def run_stage(name: str, argv: list[str]) -> dict:
    """Run one child, print its progress on one line, return its ``done`` event data (or exit on error)."""
    print(f"== {name}: {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    try:
        done = _run_stage(name, argv, print_events(name), cwd=ROOT)
    except StageError as exc:
        sys.exit(f"demo: {exc}")
    print(f"   {name}: done in {time.monotonic() - t0:.1f} s", flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo", help="output folder (default: out/demo)")
    parser.add_argument("--num-images", type=int, default=160, help="images to generate (default: 160)")
    parser.add_argument("--resolution", type=int, default=128, help="square image size (default: 128)")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples for RGB (default: 8)")
    parser.add_argument("--train-minutes", type=float, default=4.0, help="training budget in minutes (default: 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--torch-python", default=sys.executable, metavar="PY",
                        help="Python with torch for train and evaluate (default: this one)")
    args = parser.parse_args(argv)
    if args.num_images < 10:
        parser.error("--num-images must be at least 10 (a validation split is needed)")
    probe = subprocess.run([args.torch_python, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"error: --torch-python {args.torch_python} cannot import torch (make venv creates .venv with it)",
              file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    data, run, report, view = out / "dataset", out / "run", out / "report", out / "view"
    # absolute, not resolved: a venv's python is a symlink whose target lacks the venv's packages
    py, torch_py = sys.executable, os.path.abspath(args.torch_python)

    run_stage("generate", [py, str(ROOT / "scripts" / "generate.py"), "--out", str(data),
                           "--num-images", str(args.num_images), "--seed", str(args.seed),
                           "--resolution", str(args.resolution), "--samples", str(args.samples),
                           "--min-objects", "3", "--max-objects", "8", "--val-fraction", "0.2",
                           "--progress", "jsonl"])
    check = subprocess.run([py, "-m", "blender_instseg.core", "validate", str(data)], env=child_env(), cwd=ROOT,
                           capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"demo: the generated dataset does not validate: {check.stderr.strip().splitlines()[0]}")
    print(f"== validate: {check.stdout.strip().splitlines()[0] if check.stdout.strip() else 'ok'}", flush=True)
    done = run_stage("train", [torch_py, "-m", "blender_instseg.ml", "train", "--data", str(data), "--out", str(run),
                               "--minutes", str(args.train_minutes), "--device", args.device,
                               "--image-size", str(args.resolution)])
    checkpoint = done.get("checkpoint") or str(run / "last.pt")
    run_stage("evaluate", [torch_py, "-m", "blender_instseg.ml", "evaluate", "--checkpoint", checkpoint,
                           "--data", str(data), "--out", str(report), "--device", args.device])
    run_stage("predict-view", [py, "-m", "blender_instseg.blender.ops.predict_cli", "--checkpoint", checkpoint,
                               "--out", str(view), "--seed", str(args.seed + 10_000),
                               "--resolution", str(args.resolution), "--python", torch_py])
    metrics = json.loads((report / "metrics.json").read_text())
    segm, boundary = metrics.get("segm", {}), metrics.get("boundary", {})
    print(f"\nmask AP {segm.get('AP', float('nan')):.3f}  AP50 {segm.get('AP50', float('nan')):.3f}  "
          f"Boundary AP {boundary.get('AP', float('nan')):.3f}")
    print(f"dataset: {data}\ncheckpoint: {checkpoint}\nreport: {report}/report.md\noverlay: {view}/overlay.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
