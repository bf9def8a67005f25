"""The user's asset files against the built-in shapes: generator throughput and memory.

    .venv-blender/bin/python benchmarks/bench_assets.py [--assets 20] [--tris 20000] [--images 100]
        [--rgb-images 10] [--long-images 1000] [--max-triangles N] [--out DIR]

1. Makes ``--assets`` glTF files of about ``--tris`` triangles each (noisy icospheres, one
   material each) through Blender's glTF exporter in a child process, in 5 category folders
   (``--max-triangles N``: the asset runs simplify them to N at import, the generator's flag).
2. Masks-only 256x256 and 16-spp RGB 256x256 datasets with the built-in shapes and with the assets
   (``scripts/generate.py --assets``), same seed and counts: images/s from the generator's own
   ``done`` event (rendering only), the CPU time per image of that loop (``cpu_seconds``: the work
   itself; k cores render at most k images per that many ms) and the whole command's
   wall time (with start-up and imports). Goal: the assets' rate >= 80 % of the built-in rate.
3. The generator process's RSS (VmRSS, sampled at its progress events) after ``--images`` and after
   ``--long-images`` masks-only images with the assets, and the peak of those samples. Goal: flat
   (assets are imported once, never per image).

Every figure comes from the real command line in a child process, as the panel runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAKE = r"""
import sys
from pathlib import Path
import bpy
import numpy as np

out, count, tris = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
level = 1  # an icosphere of subdivisions s has 20 * 4 ** (s - 1) triangles
while 20 * 4 ** (level - 1) < tris:
    level += 1
rng = np.random.default_rng(0)
for i in range(count):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=level, radius=0.5)
    obj = bpy.context.object
    co = np.empty(len(obj.data.vertices) * 3)
    obj.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    co *= (1 + 0.15 * rng.standard_normal((len(co), 1))) * rng.uniform(0.5, 1.5, 3)
    obj.data.vertices.foreach_set("co", co.ravel())
    mat = bpy.data.materials.new(f"m{i}")
    if not mat.use_nodes:
        mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rng.uniform(0.1, 0.9, 3), 1.0)
    obj.data.materials.append(mat)
    folder = out / f"kind{i % 5}"
    folder.mkdir(parents=True, exist_ok=True)
    bpy.ops.export_scene.gltf(filepath=str(folder / f"asset{i:02d}.glb"))
print(len(obj.data.polygons))
"""

def _rss_mib(pid: int) -> float:
    """The process's resident set now (VmRSS), MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_assets(folder: Path, count: int, tris: int) -> int:
    """The asset files; returns the triangle count of the last one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder.parent / "make_assets.py"
    script.write_text(textwrap.dedent(MAKE), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), str(folder), str(count), str(tris)], capture_output=True,
                          text=True, env={**os.environ, "BLENDER_USER_RESOURCES": str(folder.parent / "user")})
    if proc.returncode != 0:
        sys.exit(f"making the assets failed: {proc.stderr.strip().splitlines()[-1:]}")
    return int(proc.stdout.strip().splitlines()[-1])  # an icosphere's faces are all triangles


def generate(out: Path, n: int, extra: list[str], rgb: bool,
             sample_at: tuple[int, ...] = ()) -> tuple[float, float, float, float, dict[int, float]]:
    """(images/s of the render loop, its CPU ms per image (the generator's threads, Cycles' included),
    wall seconds of the whole command, peak RSS MiB of the generator, {images done: the generator's
    RSS MiB then} for the counts in ``sample_at``)."""
    mode = ["--samples", "16"] if rgb else ["--masks-only"]
    cmd = [sys.executable, str(ROOT / "scripts" / "generate.py"), "--out", str(out), "--num-images", str(n),
           "--seed", "1", "--resolution", "256", *mode, "--no-preview", "--progress", "jsonl", *extra]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done, samples, peak = None, {}, 0.0
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "progress":
            peak = max(peak, _rss_mib(proc.pid))
            if event.get("step") in sample_at:
                samples[int(event["step"])] = _rss_mib(proc.pid)
        elif event.get("event") == "done":
            done = event
    err = proc.stderr.read() if proc.stderr is not None else ""
    if proc.wait() != 0 or done is None:
        sys.exit(f"generate failed ({proc.returncode}): {err.strip().splitlines()[-1:]}")
    wall = time.monotonic() - t0
    return n / done["seconds"], 1000 * done["cpu_seconds"] / n, wall, peak, samples


def run(args: argparse.Namespace) -> int:
    root: Path = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="bench_assets-")) / "work"
    if root.exists():
        sys.exit(f"error: {root} exists; remove it or pass another --out")
    assets = root / "assets"
    tris = make_assets(assets, args.assets, args.tris)
    print(f"{args.assets} glTF assets of {tris} triangles each in {assets}"
          + (f", simplified to at most {args.max_triangles} at import (--max-triangles)" if args.max_triangles else ""))
    use_assets = ["--assets", str(assets)] + (["--max-triangles", str(args.max_triangles)] if args.max_triangles else [])
    print("| run | images | images/s (render loop) | CPU ms per image | whole command, s | peak RSS, MiB |")
    print("|---|---|---|---|---|---|")
    rates = {}
    for rgb, n in ((False, args.images), (True, args.rgb_images)):
        label = "RGB 16 spp 256x256" if rgb else "masks-only 256x256"
        for source, extra in (("built-in shapes", []), ("assets", use_assets)):
            name = f"{'rgb' if rgb else 'masks'}-{'assets' if extra else 'builtin'}"
            rate, cpu, wall, rss, _ = generate(root / name, n, extra, rgb)
            rates[name] = rate
            print(f"| {label}, {source} | {n} | {rate:.2f} | {cpu:.0f} | {wall:.1f} | {rss:.0f} |", flush=True)
    marks = (args.images, args.long_images)
    rate, cpu, wall, rss, at = generate(root / "masks-assets-long", args.long_images, use_assets, False, marks)
    print(f"| masks-only 256x256, assets | {args.long_images} | {rate:.2f} | {cpu:.0f} | {wall:.1f} | {rss:.0f} |")
    print("RSS of the long run (VmRSS when the progress event of that image arrives): "
          + ", ".join(f"after {k} images {v:.0f} MiB" for k, v in sorted(at.items())) + " (goal: flat)")
    for kind in ("masks", "rgb"):
        print(f"{kind}: assets / built-in rate = {rates[f'{kind}-assets'] / rates[f'{kind}-builtin']:.2f} (goal >= 0.80)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--tris", type=int, default=20000)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rgb-images", type=int, default=10)
    parser.add_argument("--long-images", type=int, default=1000)
    parser.add_argument("--max-triangles", type=int, default=0,
                        help="pass --max-triangles N to the asset runs (simplified at import; default 0: as made)")
    parser.add_argument("--out", type=Path, default=None,
                        help="work folder, must not exist (default: a new temporary folder)")
    args = parser.parse_args()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
