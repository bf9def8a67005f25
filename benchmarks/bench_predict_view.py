"""Predict View round trip: render the camera view -> model process -> overlay + selection.

Prints the end-to-end time of ``bpy.ops.instseg.predict_view`` (blocking path, what a user waits
for), cold (the first click starts the warm model server: interpreter start + torch import +
checkpoint load + inference) and warm (later clicks reuse it), and its parts: the Cycles render,
the model request (warm server, cold server, and the old one-shot process for comparison), and
bringing predictions back (decode, match, overlay, selection).
The scene is one of the generator's procedural scenes at the given resolution.

  .venv/bin/python benchmarks/bench_predict_view.py --checkpoint RUN/last.pt [--resolution 512]

Without --checkpoint a 1-step model is trained on a small shapes dataset first (its predictions
are junk, but the model has its real size, so the timing is the real one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _tiny_checkpoint(work: Path) -> Path:
    from tests.shapes import make_shapes_dataset

    data = make_shapes_dataset(work / "shapes", n_images=4, size=64, seed=0)
    run = work / "run"
    subprocess.run([sys.executable, "-m", "blender_instseg.ml", "train", "--data", str(data.parent), "--out",
                    str(run), "--steps", "1", "--batch-size", "2", "--device", "cpu"],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return run / "last.pt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="model checkpoint (default: train a 1-step one)")
    parser.add_argument("--resolution", type=int, default=512, help="square render size [512]")
    parser.add_argument("--samples", type=int, default=4, help="Cycles samples of the view render [4, the panel default]")
    parser.add_argument("--repeats", type=int, default=3, help="timed warm round trips (and parts) [3]")
    parser.add_argument("--cold-repeats", type=int, default=2, help="timed cold starts (fresh server each) [2]")
    parser.add_argument("--seed", type=int, default=3, help="generator scene seed [3]")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-predict-view-"))
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(work / "blender-user"))
    ckpt = args.checkpoint or _tiny_checkpoint(work)
    if not ckpt.is_file():
        print(f"error: checkpoint not found: {ckpt}", file=sys.stderr)
        return 2

    import bpy  # before addon_utils: bpy puts Blender's script modules on sys.path
    import addon_utils
    import numpy as np

    from blender_instseg.blender.children import SERVERS
    from blender_instseg.blender.ops import predict, view_render
    from blender_instseg.blender.scene import builder
    from blender_instseg.core.genconfig import GeneratorConfig
    from blender_instseg.procs.argv import child_env, ml_argv
    from blender_instseg.procs.child import drive, run_blocking
    from blender_instseg.procs.server import ServerCall, ServerPool

    built = builder.build_scene(GeneratorConfig(), args.seed)
    addon_utils.enable("blender_instseg", default_set=True)
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = args.resolution
    scene.render.resolution_percentage = 100
    s = scene.instseg
    s.checkpoint = str(ckpt)
    s.predict_samples = args.samples
    s.device = "cpu"
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(work / "out")

    med = statistics.median
    state = bpy.context.window_manager.instseg_job
    view_render.render_view(bpy.context, samples=args.samples)  # warm-up: Cycles kernels, file caches

    def click() -> float:
        t0 = time.perf_counter()
        assert bpy.ops.instseg.predict_view(python=sys.executable) == {"FINISHED"}, state.last_error
        return time.perf_counter() - t0

    # cold: the first click starts the warm server (Python + import torch + checkpoint load)
    cold = []
    for _ in range(args.cold_repeats):
        SERVERS.stop_all()
        cold.append(click())
    server = SERVERS.current
    assert server is not None and server.alive
    warm = [click() for _ in range(args.repeats)]
    assert SERVERS.current is server, "the warm server was replaced between clicks"

    t_render = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        view = view_render.render_view(bpy.context, samples=args.samples)
        t_render.append(time.perf_counter() - t0)
    out = work / "out" / "predict"
    key = predict.server_key(sys.executable, ckpt, "cpu")
    serve_argv = ml_argv(sys.executable, "predict", ["--serve", "--checkpoint", str(ckpt), "--device", "cpu",
                                                    "--score-threshold", f"{s.score_threshold:g}"])
    request = {"image": str(out / "view.png"), "out": str(work / "p.json"), "score_threshold": s.score_threshold}

    def model_call(pool: ServerPool) -> tuple[float, float]:
        call = ServerCall(pool, key, serve_argv, request, env=child_env(), name="predict")
        t0 = time.perf_counter()
        res = drive(call, name="predict")
        assert res.ok and res.done is not None, res.error
        return time.perf_counter() - t0, float(res.done.get("ms"))

    warm_model = [model_call(SERVERS) for _ in range(args.repeats)]
    cold_model = []
    for _ in range(args.cold_repeats):
        pool = ServerPool()
        cold_model.append(model_call(pool)[0])
        pool.stop_all()
    t_child = []
    for _ in range(args.cold_repeats):
        t0 = time.perf_counter()
        res = run_blocking(ml_argv(sys.executable, "predict", [
            "--checkpoint", str(ckpt), "--images", str(out / "view.png"), "--out", str(work / "p1.json"),
            "--device", "cpu"]), env=child_env(), name="predict")
        t_child.append(time.perf_counter() - t0)
        assert res.ok, res.error
    n_model_preds = len(json.loads((out / "predictions.json").read_text()))
    t_apply_model = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        predict.apply_predictions(bpy.context, view, out / "predictions.json", work / "apply", {1: "object"})
        t_apply_model.append(time.perf_counter() - t0)
    # bring-back cost with as many predictions as the scene has objects (GT masks as predictions)
    from pycocotools import mask as mask_utils

    preds = []
    for i in sorted(set(np.unique(view.id_map).tolist()) - {0}):
        r = mask_utils.encode(np.asfortranarray((view.id_map == i).astype(np.uint8)))
        preds.append({"image_id": 1, "category_id": 1, "score": 0.9,
                      "segmentation": {"size": list(r["size"]), "counts": r["counts"].decode()}})
    gt_preds = work / "gt_preds.json"
    gt_preds.write_text(json.dumps(preds))
    t_apply = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        predict.apply_predictions(bpy.context, view, gt_preds, work / "apply", {1: "object"})
        t_apply.append(time.perf_counter() - t0)
    SERVERS.stop_all()

    def runs(ts: list[float]) -> str:
        return str([round(t, 2) for t in ts])

    print(f"predict_view round trip at {args.resolution}x{args.resolution}, {args.samples} spp, "
          f"{len(built.objects)} objects, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"  cold click (starts the server)      median {med(cold):.2f} s   runs {runs(cold)}")
    print(f"  warm click (server reused)          median {med(warm):.2f} s   runs {runs(warm)}")
    print(f"  Cycles render (RGB + index)         median {med(t_render):.2f} s   runs {runs(t_render)}")
    print(f"  model, warm server request          median {med(t for t, _ in warm_model):.2f} s   "
          f"(inference inside the server {med(ms for _, ms in warm_model):.0f} ms)")
    print(f"  model, cold server (start+load+infer) median {med(cold_model):.2f} s   runs {runs(cold_model)}")
    print(f"  model, one-shot process (before)    median {med(t_child):.2f} s   runs {runs(t_child)}")
    print(f"  bring back ({n_model_preds} model predictions)    median {med(t_apply_model) * 1000:.0f} ms")
    print(f"  bring back ({len(preds)} GT masks as predictions) median {med(t_apply) * 1000:.0f} ms")
    print(f"  last summary: {state.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
