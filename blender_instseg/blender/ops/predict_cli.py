"""``python -m blender_instseg.blender.ops.predict_cli``: Predict View from the command line.

Runs the same operator an artist clicks (``bpy.ops.instseg.predict_view``, blocking path) on either
a .blend file's camera view or one of the generator's procedural scenes, so a script or the demo
gets exactly what the panel gives: view.png, predictions.json, overlay.png in --out, the matched
objects selected (and, with --save-blend, a .blend to open and look at). Prints
``core.protocol`` events (``done`` carries the result); bad input is one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ...core import protocol


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m blender_instseg.blender.ops.predict_cli",
                                description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model checkpoint (required unless --predictions is given)")
    p.add_argument("--out", type=Path, required=True, help="folder for view.png, predictions.json, overlay.png")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--blend", type=Path, default=None, help="predict this .blend file's active camera view")
    src.add_argument("--seed", type=int, default=0, help="else build the generator's scene for this seed [0]")
    p.add_argument("--config", type=Path, default=None, help="generator config (JSON/TOML) for the scene")
    p.add_argument("--resolution", type=int, default=512, help="square render size [512]")
    p.add_argument("--samples", type=int, default=4, help="Cycles samples of the view render [4]")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="drop predictions below this (default: the checkpoint's validated best-F1 threshold; "
                        "0.3 for a --predictions file)")
    p.add_argument("--match-iou", type=float, default=0.5, help="IoU needed to select an object [0.5]")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="model device [auto]")
    p.add_argument("--python", default="", help="interpreter with torch [the add-on preference / this one]")
    p.add_argument("--predictions", type=Path, default=None,
                   help="use this COCO results file instead of running the model")
    p.add_argument("--save-blend", action="store_true", help="also save OUT/scene.blend with the selection")
    return p


def _fail(message: str) -> int:
    protocol.emit("error", message=message)
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.predictions is None and (args.checkpoint is None or not args.checkpoint.is_file()):
        return _fail(f"checkpoint not found: {args.checkpoint}" if args.checkpoint else "--checkpoint is required")
    if args.predictions is not None and not args.predictions.is_file():
        return _fail(f"predictions file not found: {args.predictions}")
    if args.blend is not None and not args.blend.is_file():
        return _fail(f"blend file not found: {args.blend}")
    if not 16 <= args.resolution <= 8192 or args.samples < 1:
        return _fail("--resolution must be in [16, 8192] and --samples >= 1")

    protocol.reserve_stdout_for_events()  # before bpy: its C code must not write into the events stream
    import bpy  # noqa: PLC0415 - after argument checks, so --help and bad input stay fast
    import addon_utils  # noqa: PLC0415

    from ...procs.argv import package_name

    if args.blend is not None:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend))
    else:
        from ...core.genconfig import GeneratorConfig, load_config
        from ..scene import builder

        try:
            cfg = load_config(args.config) if args.config is not None else GeneratorConfig()
        except (ValueError, OSError) as exc:
            return _fail(str(exc))
        builder.build_scene(cfg, args.seed)
    name = package_name()
    if addon_utils.enable(name, default_set=True) is None:
        return _fail(f"could not enable the add-on {name}")
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = args.resolution
    scene.render.resolution_percentage = 100
    s = scene.instseg
    if args.checkpoint is not None:
        s.checkpoint = str(args.checkpoint.resolve())
    s.predict_samples = args.samples
    s.auto_threshold = args.score_threshold is None
    if args.score_threshold is not None:
        s.score_threshold = args.score_threshold
    s.match_iou_threshold = args.match_iou
    s.device = args.device
    s.show_in_camera = True
    protocol.emit("progress", step=0, total=1, phase="render")
    out = args.out.resolve()
    try:
        bpy.ops.instseg.predict_view(python=args.python or sys.executable, output_dir=str(out),  # type: ignore[attr-defined]
                                     predictions_path=str(args.predictions.resolve()) if args.predictions else "")
    except RuntimeError as exc:
        return _fail(str(exc).removeprefix("Error: ").strip())
    state = bpy.context.window_manager.instseg_job
    result = {
        "out": str(out), "overlay": state.overlay_path, "predictions": str(args.predictions or out / "predictions.json"),
        "summary": state.summary,
        "selected": sorted(ob.name for ob in scene.objects if ob.select_get()),
        "matched": [{"object": r.object_name, "category": r.category, "score": r.score, "iou": r.iou}
                    for r in state.matched],
        "unmatched": [{"index": r.index, "category": r.category, "score": r.score} for r in state.unmatched],
        "missed": [r.object_name for r in state.missed],
    }
    if args.save_blend:
        blend = out / "scene.blend"
        image = bpy.data.images.get(state.overlay_image)
        if image is not None:
            image.pack()
        layer = bpy.data.images.get("InstSeg Overlay Layer")
        if layer is not None:
            layer.pack()
        bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
        result["blend"] = str(blend)
    protocol.emit("progress", step=1, total=1, phase="done")
    protocol.emit("done", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
