"""Look shift: does training on randomised looks keep AP on the plain look and raise it on a realistic one?

Two looks of the same scene recipe (same seeds, so the same objects, cameras and labels):

- A: today's default look (procedural colours, gradient or plain world, grey ground);
- B: an HDRI world, a photo backplate over a shadow-catcher ground, image textures and sensor
  effects (noise, exposure, white balance, JPEG), made from the script's own procedural media
  (``bench_looks.make_media``: the repo ships no third-party media).

The default model is trained on A, and on the same scenes in randomised looks ("A+B"): each image
plain (look A) with the generator's ``looks.plain_probability`` (``--plain-shares``, one A+B run per
value), every other image with each part of look B switched on at random (``--part-probability``,
default 0.75 each). Each run is scored on held-out scenes in look A and the same held-out scenes in
look B. Steps, not minutes, so the machine's load cannot change the result.
Prints the table for docs/benchmarks.md and writes OUT/results.json; rerunning the same command resumes (finished datasets and runs are kept).

  python benchmarks/bench_look_shift.py --out out/bench_look_shift            # the benchmark
  python benchmarks/bench_look_shift.py --out /tmp/ls --train-images 8 --test-images 4 --resolution 64 \\
      --steps 5                                                                # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_loop import stage  # noqa: E402
from bench_looks import make_media  # noqa: E402

from blender_instseg.core.fileio import atomic_write_json, atomic_write_text, read_json  # noqa: E402
from blender_instseg.pipeline.stages import StageError  # noqa: E402
from blender_instseg.procs.argv import checkout_generate_script, generator_argv, ml_argv  # noqa: E402

METRICS = ("mask_AP", "mask_AP50", "boundary_AP")


def look_config(media: dict[str, Path], share: float) -> dict[str, Any]:
    """Generator config of look B with every part switched on with probability ``share`` (0: look A).

    The camera looks down steeply in every set (elevation 45-80 degrees) so most images see no
    horizon and can take the photo backplate; A uses the same cameras.
    """
    conf: dict[str, Any] = {"camera": {"elevation": [45.0, 80.0]}}
    if share > 0:
        conf["world"] = {"hdri_dir": str(media["hdri"]), "hdri_probability": share}
        conf["backplate"] = {"photos_dir": str(media["backplate"]), "probability": share}
        conf["textures"] = {"textures_dir": str(media["textures"]), "ground_probability": share,
                            "distractor_probability": share, "object_probability": 0.3 * share}
        conf["sensor"] = {f"{name}_probability": share for name in ("noise", "exposure", "white_balance", "jpeg")}
    return conf


def generate(args: argparse.Namespace, out: Path, config: Path, n: int, seed: int, val_fraction: float) -> None:
    gen = ["--out", str(out), "--config", str(config), "--num-images", str(n), "--seed", str(seed),
           "--resolution", str(args.resolution), "--samples", str(args.samples), "--min-objects", str(args.min_objects),
           "--max-objects", str(args.max_objects), "--val-fraction", str(val_fraction), "--workers", str(args.workers),
           "--progress", "jsonl", "--no-preview"]
    stage(f"generate {out.name}", generator_argv(args.python_bpy, gen, script=checkout_generate_script()))


def mix_name(plain: float) -> tuple[str, str]:
    """(results key, folder suffix) of the A+B run with ``plain`` images in look A."""
    return f"A+B, plain {plain:g}", f"AB{round(100 * plain)}"


def table(results: dict[str, Any]) -> str:
    lines = ["| trained on | tested on | mask AP | AP50 | Boundary AP |", "|---|---|---|---|---|"]
    for train, tests in results["runs"].items():
        for test, m in tests.items():
            cells = [f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "-" for k in METRICS]
            lines.append(f"| {train} | {test} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench_look_shift",
                   help="benchmark folder (default out/bench_look_shift)")
    p.add_argument("--train-images", type=int, default=1000, help="training set size, train + val (default 1000)")
    p.add_argument("--test-images", type=int, default=100, help="held-out scenes, in each look (default 100)")
    p.add_argument("--resolution", type=int, default=128, help="square image size (default 128)")
    p.add_argument("--samples", type=int, default=8, help="Cycles samples (default 8)")
    p.add_argument("--min-objects", type=int, default=3)
    p.add_argument("--max-objects", type=int, default=10)
    p.add_argument("--steps", type=int, default=3000, help="training steps of each run (default 3000)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--plain-shares", type=float, nargs="+", default=[0.5],
                   help="A+B: looks.plain_probability of each A+B run (default 0.5)")
    p.add_argument("--part-probability", type=float, default=0.75,
                   help="A+B: probability of each part of look B on an image that is not plain (default 0.75)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="generator processes")
    p.add_argument("--seed", type=int, default=0, help="training scenes' seed; the held-out scenes use seed + 1")
    p.add_argument("--python-torch", default=sys.executable)
    p.add_argument("--python-bpy", default=sys.executable)
    args = p.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    media_root = out / "media"
    if not media_root.is_dir():
        media_root.mkdir()
        make_media(media_root)
    media = {"hdri": media_root / "hdri", "backplate": media_root / "photos", "textures": media_root / "textures"}
    if not all(0.0 <= v <= 1.0 for v in [*args.plain_shares, args.part_probability]):
        p.error("--plain-shares and --part-probability must be in [0, 1]")
    configs = {}
    for name, share in (("A", 0.0), ("B", 1.0)):
        configs[name] = atomic_write_json(out / f"look_{name}.json", look_config(media, share), indent=1)
    runs = {"A": ("A", configs["A"])}
    for plain in args.plain_shares:
        key, suffix = mix_name(plain)
        conf = {**look_config(media, args.part_probability), "looks": {"plain_probability": plain}}
        runs[key] = (suffix, atomic_write_json(out / f"look_{suffix}.json", conf, indent=1))
    t0 = time.monotonic()
    results: dict[str, Any] = {"command": " ".join([sys.executable, *sys.argv]), "runs": {},
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    try:
        tests = {}
        for look in ("A", "B"):
            tests[look] = out / f"test_{look}"
            generate(args, tests[look], configs[look], args.test_images, args.seed + 1, 0.0)
        for look, (suffix, config) in runs.items():
            data, run = out / f"train_{suffix}", out / f"run_{suffix}"
            generate(args, data, config, args.train_images, args.seed, 0.1)
            train = ["--data", str(data), "--out", str(run), "--steps", str(args.steps), "--device", args.device,
                     "--image-size", str(args.resolution), "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
            if (run / "last.pt").is_file():
                train.append("--resume")  # finished or not: train stops at --steps
            else:
                train += ["--init", "none"]  # the bundled weights have seen both looks: from scratch
            stage(f"train {look}", ml_argv(args.python_torch, "train", train))
            results["runs"][look] = {}
            for test_look, test in tests.items():
                report = run / f"eval_{test_look}"
                stage(f"evaluate {look} on {test_look}", ml_argv(args.python_torch, "evaluate", [
                    "--checkpoint", str(run / "last.pt"), "--data", str(test), "--out", str(report),
                    "--device", args.device, "--no-plots"]))
                metrics = read_json(report / "metrics.json", "metrics")
                results["runs"][look][test_look] = {"mask_AP": metrics.get("segm", {}).get("AP"),
                                                    "mask_AP50": metrics.get("segm", {}).get("AP50"),
                                                    "boundary_AP": metrics.get("boundary", {}).get("AP")}
    except StageError as exc:
        print(f"bench_look_shift: {exc}", file=sys.stderr)
        return 1
    results["seconds"] = round(time.monotonic() - t0, 1)
    text = table(results)
    atomic_write_json(out / "results.json", results, indent=1)
    atomic_write_text(out / "results.md", text + "\n")
    print(f"\n{args.train_images} training images, {args.steps} steps, {args.test_images} held-out scenes per look\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
