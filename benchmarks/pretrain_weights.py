"""The recipe of the bundled pretrained weights (blender_instseg/ml/weights/solov2_object.pt).

1. Shapes: ``shape_families.write_pretrain_shapes`` writes 48 random meshes (extruded outlines,
   lathes, boxes, ellipsoids; seed 0) as an ``--assets`` folder, one category each.
2. Looks: ``bench_looks.make_media`` writes a procedural HDRI, photo backplates and texture sets;
   each look part is on for half of the images (the look-shift benchmark's "A+B" mix).
3. Scenes: the generator renders IMAGES images at 256², 8 spp, 3-12 objects, free rotation
   (``--seed 0``, 5 % held out for validation).
4. Training, two stages: ``ml train --init none --steps 3000 --seed 0`` with every shape its own
   category (48), so the second-look classifier learns to tell shapes apart (a one-category run
   gives it no gradient: a softmax over one class is constant); then ``ml train --class-agnostic
   --init <stage 1> --steps 1000`` (every category folded into "object"; the category head swapped,
   everything else kept). Both evaluated on the held-out images every EVAL_EVERY steps: the curve.
5. Export: the averaged weights as float16 with the config, categories, last evaluation and this
   recipe (``pretrained.export_weights``).

Steps, not minutes, so the machine's load cannot change the weights. Rerunning the same command
resumes (finished datasets and runs are kept). Prints the curve table for docs/model.md.

  python benchmarks/pretrain_weights.py --python-bpy .venv-blender/bin/python     # the bundled weights
  python benchmarks/pretrain_weights.py --out /tmp/pt --images 8 --resolution 64 --steps 4 --eval-every 2 \\
      --export /tmp/pt/w.pt                                                      # a smoke run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_loop import stage  # noqa: E402
from bench_looks import make_media  # noqa: E402
from shape_families import write_pretrain_shapes  # noqa: E402

from blender_instseg.core.fileio import atomic_write_json  # noqa: E402
from blender_instseg.pipeline.stages import StageError  # noqa: E402
from blender_instseg.procs.argv import checkout_generate_script, generator_argv, ml_argv  # noqa: E402

BUNDLED = ROOT / "blender_instseg" / "ml" / "weights" / "solov2_object.pt"


def look_config(media: Path) -> dict[str, Any]:
    """Every look part on for half of the images, as the look-shift benchmark's A+B set."""
    return {"world": {"hdri_dir": str(media / "hdri"), "hdri_probability": 0.5},
            "backplate": {"photos_dir": str(media / "photos"), "probability": 0.5},
            "textures": {"textures_dir": str(media / "textures"), "ground_probability": 0.5,
                         "distractor_probability": 0.5, "object_probability": 0.15},
            "sensor": {f"{name}_probability": 0.5 for name in ("noise", "exposure", "white_balance", "jpeg")}}


def curve(run: Path, python_torch: str) -> list[dict[str, Any]]:
    """(step, training minutes, mask AP, AP50) of every evaluation in the run's last checkpoint."""
    import json
    import subprocess

    code = ("import json,sys; from blender_instseg.ml.checkpoint import load_checkpoint; "
            "c = load_checkpoint(sys.argv[1]); print(json.dumps(c.get('history', [])))")
    out = subprocess.run([python_torch, "-c", code, str(run / "last.pt")], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    rows = []
    for h in json.loads(out):
        if "mask_AP" in h or "AP" in h:
            rows.append({"step": h.get("step"), "minutes": round(float(h.get("train_seconds", 0.0)) / 60, 1),
                         "mask_AP": h.get("mask_AP", h.get("AP")), "AP50": h.get("mask_AP50", h.get("AP50"))})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "pretrain", help="work folder (default out/pretrain)")
    p.add_argument("--images", type=int, default=1200, help="generated images, train + val (default 1200)")
    p.add_argument("--resolution", type=int, default=256, help="square image size (default 256)")
    p.add_argument("--samples", type=int, default=8, help="Cycles samples (default 8)")
    p.add_argument("--shape-steps", type=int, default=3000,
                   help="steps of the first stage, every shape its own category (default 3000)")
    p.add_argument("--steps", type=int, default=1000, help="steps of the class-agnostic second stage (default 1000)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between evaluations (default 500)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="generator processes (default 2)")
    p.add_argument("--shapes", type=Path, default=None, metavar="DIR",
                   help="an --assets folder of your own to pretrain on instead of the random shapes")
    p.add_argument("--export", type=Path, default=BUNDLED, help=f"weights file to write (default {BUNDLED.relative_to(ROOT)})")
    p.add_argument("--python-torch", default=sys.executable)
    p.add_argument("--python-bpy", default=sys.executable)
    args = p.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shapes, media = (args.shapes.resolve() if args.shapes else out / "shapes"), out / "media"
    if args.shapes is None and not shapes.is_dir():
        write_pretrain_shapes(shapes)
    if not media.is_dir():
        media.mkdir()
        make_media(media)
    look = atomic_write_json(out / "look.json", look_config(media), indent=1)
    data, run = out / "data", out / "run"
    gen = ["--out", str(data), "--config", str(look), "--assets", str(shapes), "--num-images", str(args.images),
           "--seed", "0", "--resolution", str(args.resolution), "--samples", str(args.samples),
           "--min-objects", "3", "--max-objects", "12", "--val-fraction", "0.05", "--workers", str(args.workers),
           "--progress", "jsonl", "--no-preview"]
    common = ["--data", str(data), "--eval-every", str(args.eval_every), "--image-size", str(args.resolution),
              "--seed", "0", "--device", args.device]
    named = out / "run_shapes"
    stage1 = [*common, "--out", str(named), "--steps", str(args.shape_steps)]
    stage1 += ["--resume"] if (named / "last.pt").is_file() else ["--init", "none"]
    stage2 = [*common, "--out", str(run), "--class-agnostic", "--steps", str(args.steps)]
    stage2 += ["--resume"] if (run / "last.pt").is_file() else ["--init", str(named / "last.pt")]
    try:
        stage("generate", generator_argv(args.python_bpy, gen, script=checkout_generate_script()))
        stage("train: every shape its own category", ml_argv(args.python_torch, "train", stage1))
        stage("train: class-agnostic", ml_argv(args.python_torch, "train", stage2))
    except StageError as exc:
        print(f"pretrain_weights: {exc}", file=sys.stderr)
        return 1
    recipe = {"command": "python benchmarks/pretrain_weights.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "shapes": str(args.shapes) if args.shapes else "shape_families.write_pretrain_shapes(seed=0)",
              "scenes_seed": 0, "train_seed": 0, "images": args.images,
              "resolution": args.resolution, "samples": args.samples, "shape_steps": args.shape_steps,
              "steps": args.steps}
    code = ("import json,sys; from blender_instseg.ml.pretrained import export_weights; "
            "export_weights(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))")
    import json
    import subprocess

    subprocess.run([args.python_torch, "-c", code, str(run / "last.pt"), str(args.export), json.dumps(recipe)],
                   cwd=ROOT, check=True)
    rows = {"shapes": curve(named, args.python_torch), "object": curve(run, args.python_torch)}
    atomic_write_json(out / "curve.json", rows, indent=1)
    print(f"\nwrote {args.export} ({args.export.stat().st_size / 1e6:.1f} MB)")
    print("| stage | step | training minutes | mask AP | AP50 |\n|---|---|---|---|---|")
    for name, stage_rows in rows.items():
        for r in stage_rows:
            print(f"| {name} | {r['step']} | {r['minutes']} | {r['mask_AP']:.3f} | {r['AP50']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
