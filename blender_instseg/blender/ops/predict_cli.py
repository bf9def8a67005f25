"""``python -m blender_instseg.blender.ops.predict_cli``: Predict View from the command line.

Runs the same operator an artist clicks (``bpy.ops.instseg.predict_view``, blocking path) on either
a .blend file's camera view or one of the generator's procedural scenes, so a script or the demo
gets exactly what the panel gives: view.png, predictions.json, overlay.png in --out, the matched
objects selected (and, with --save-blend, a .blend to open and look at). Prints
``core.protocol`` events (``done`` carries the result).

``--frames A-B`` runs ``bpy.ops.instseg.predict_frames`` instead (``predict_frames``): one render,
request and overlay per frame, a progress event per frame, the per-object summary in ``done``.

Bad input is one ``error:`` line on stderr and exit 2, found before anything is written: the
arguments, --out, the .blend, the generator config and a --predictions file are checked first, then
the scene is loaded (with --frames: its camera and frame range checked), then the model process is
started (warm, for the operator to reuse) and must load the checkpoint on the device before the
view is rendered.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from ...core import protocol
from ...core.cliargs import OneLineParser, UsageError, check_out_folder
from ...core.fileio import read_json
from ...ml.weights import BUNDLED

MODEL_START_TIMEOUT_S = 180.0  # Python start, import torch, checkpoint load (a cold disk included)
# what a .blend file starts with: plain, gzip- or zstd-compressed
BLEND_MAGICS = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m blender_instseg.blender.ops.predict_cli", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None,
                   help="model checkpoint, or 'bundled' (the pretrained weights shipped with the add-on: every "
                        "object, category 'object'); required unless --predictions is given")
    p.add_argument("--out", required=True, help="folder for view.png, predictions.json, overlay.png")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--blend", default=None, help="predict this .blend file's active camera view")
    src.add_argument("--seed", type=int, default=0, help="else build the generator's scene for this seed [0]")
    p.add_argument("--config", default=None, help="generator config (JSON/TOML) for the scene")
    p.add_argument("--resolution", type=int, default=512, help="square render size [512]")
    p.add_argument("--samples", type=int, default=4, help="Cycles samples of the view render [4]")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="drop predictions below this, in [0, 1] (default: the checkpoint's validated best-F1 "
                        "threshold; 0.3 for a --predictions file)")
    p.add_argument("--match-iou", type=float, default=0.5, help="IoU needed to select an object, in [0, 1] [0.5]")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="model device [auto]")
    p.add_argument("--python", default="", help="interpreter with torch [the add-on preference / this one]")
    p.add_argument("--predictions", default=None,
                   help="use this COCO results file instead of running the model")
    p.add_argument("--frames", metavar="A-B", default=None,
                   help="predict every frame of this range (inside the scene's; A alone: one frame) instead of the "
                        "current view: OUT gets views/, predictions/, overlay/, overlay_layer/ (frame_NNNN files) "
                        "and summary.json / summary.md per object across the frames")
    p.add_argument("--save-blend", action="store_true", help="also save OUT/scene.blend with the selection")
    p.add_argument("-v", "--verbose", action="store_true", help="log warnings and details on stderr")
    return p


def _fail(message: str) -> int:
    message = " ".join(str(message).split())
    protocol.emit("error", message=message)
    print(f"error: {message}", file=sys.stderr)
    return 2


def _checked(check: Any, value: str) -> Path:
    """A ``core.cliargs`` output check, its ValueError as this command's one-line UsageError."""
    try:
        return check(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _given_path(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    if not value.strip():
        raise UsageError(f"{flag} is empty")
    return Path(value)


def check_predictions(path: Path, size: int) -> None:
    """A --predictions file the view can use: COCO results whose masks are ``size`` x ``size`` (the render)
    and whose scores are numbers in [0, 1] (NaN would pass every threshold comparison unnoticed)."""
    try:
        data = read_json(path, "predictions file")
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if isinstance(data, dict):
        data = data.get("predictions", data.get("annotations"))
    if not isinstance(data, list):
        raise UsageError(f"{path} is not a COCO results list")
    for i, p in enumerate(data):
        seg = p.get("segmentation") if isinstance(p, dict) else None
        if not isinstance(seg, dict) or not isinstance(seg.get("counts"), (str, list)):
            raise UsageError(f"{path}: prediction {i} has no RLE 'segmentation'")
        if seg.get("size") != [size, size]:
            raise UsageError(f"{path}: prediction {i}'s mask size {seg.get('size')} differs from the rendered view "
                             f"{[size, size]} (--resolution)")
        score = p.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not (0.0 <= float(score) <= 1.0):
            raise UsageError(f"{path}: prediction {i} has score {score!r}; scores must be numbers in [0, 1]")
        if "category_id" in p and (isinstance(p["category_id"], bool) or not isinstance(p["category_id"], int)):
            raise UsageError(f"{path}: prediction {i} has category_id {p['category_id']!r}, not an integer")


def _is_blend(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(8)
    return any(head.startswith(magic) for magic in BLEND_MAGICS)


def check_args(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None, Path | None]:
    """Every check that needs neither bpy nor the model: (out, checkpoint, predictions, blend)."""
    out = _checked(check_out_folder, args.out)
    checkpoint = BUNDLED if args.checkpoint == "bundled" else _given_path(args.checkpoint, "--checkpoint")
    predictions = _given_path(args.predictions, "--predictions")
    blend = _given_path(args.blend, "--blend")
    config = _given_path(args.config, "--config")
    if not 16 <= args.resolution <= 8192:
        raise UsageError(f"--resolution must be in [16, 8192], got {args.resolution}")
    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    for flag, value in (("--score-threshold", args.score_threshold), ("--match-iou", args.match_iou)):
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise UsageError(f"{flag} must be in [0, 1], got {value}")
    if args.frames is not None:
        if predictions is not None:
            raise UsageError("--predictions holds one view's results; it cannot be combined with --frames")
        from ...generator.annotate_cli import parse_frames

        try:
            parse_frames(args.frames)
        except UsageError as exc:
            raise UsageError(str(exc)) from None
    if predictions is None and checkpoint is None:
        raise UsageError("--checkpoint is required (or --predictions)")
    if checkpoint is not None and not checkpoint.exists():
        raise UsageError(f"checkpoint not found: {checkpoint}")
    if predictions is not None:
        if not predictions.is_file():
            raise UsageError(f"predictions file not found: {predictions}")
        check_predictions(predictions, args.resolution)
    if blend is not None:
        if not blend.is_file():
            raise UsageError(f"blend file not found: {blend}")
        if not _is_blend(blend):
            raise UsageError(f"{blend} is not a .blend file")
    if config is not None:
        from ...core.genconfig import load_config

        try:
            args.generator_config = load_config(config)
        except (ValueError, OSError) as exc:
            raise UsageError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None
    return out, checkpoint, predictions, blend


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null for the block: Blender's C code logs there (after
    ``protocol.reserve_stdout_for_events`` fd 1 is stderr too); errors come back as exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(os.devnull, "wb") as null:
            for fd in saved:
                os.dup2(null.fileno(), fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def start_model(python: str, checkpoint: Path, device: str, score_threshold: float | None) -> str | None:
    """Start the operator's warm model server (``children.SERVERS``, the key the operator computes) and
    wait until it has loaded the checkpoint on ``device``: None when ready, else the server's error.
    The operator's request then goes to this server, so the checkpoint is loaded once."""
    from ...procs.argv import child_env, ml_argv
    from ...procs.child import ChildStartError, last_line
    from ...procs.server import READY_MESSAGE
    from ..children import SERVERS
    from .predict import server_key

    threshold = [] if score_threshold is None else ["--score-threshold", f"{score_threshold:g}"]
    argv = ml_argv(python, "predict", ["--serve", "--checkpoint", str(checkpoint), *threshold, "--device", device])
    try:
        server, _ = SERVERS.get(server_key(python, checkpoint, device), argv, env=child_env())
    except ChildStartError as exc:
        return str(exc)
    deadline = time.monotonic() + MODEL_START_TIMEOUT_S
    while time.monotonic() < deadline:
        for ev in server.job.poll():
            if ev.event == "log" and ev.message == READY_MESSAGE:
                server.ready = True
                return None
            if ev.event == "error":
                SERVERS.discard(server)
                return ev.message or "the model process failed to start"
        if server.job.finished:
            SERVERS.discard(server)
            detail = last_line(server.job.stderr_tail())
            return f"the model process exited (exit code {server.job.returncode})" + (f": {detail}" if detail else "")
        time.sleep(0.02)
    SERVERS.discard(server)
    return f"the model process did not load {checkpoint} within {MODEL_START_TIMEOUT_S:.0f} s"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.generator_config = None
        out, checkpoint, predictions, blend = check_args(args)
    except UsageError as exc:
        return _fail(str(exc))
    # the operator logs what it also reports; the one error line is ours (-v shows the log)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL,
                        format="%(levelname)s: %(message)s")

    protocol.reserve_stdout_for_events()  # before bpy: its C code must not write into the events stream
    import bpy  # noqa: PLC0415 - after argument checks, so --help and bad input stay fast
    import addon_utils  # noqa: PLC0415

    from ...procs.argv import package_name

    python = args.python or sys.executable
    if blend is not None:
        try:
            with _native_output_silenced():  # Blender logs "Read blend: ..." from C; stderr is for the error line
                bpy.ops.wm.open_mainfile(filepath=str(blend))
        except RuntimeError as exc:
            return _fail(f"cannot open {blend}: {str(exc).removeprefix('Error: ').strip()}")
    else:
        from ...core.genconfig import GeneratorConfig
        from ..scene import builder

        with _native_output_silenced():  # the importers log each bundled shape from C; stderr is for errors
            builder.build_scene(args.generator_config or GeneratorConfig(), args.seed)
    if args.frames is not None:
        from .predict_frames import check_camera, resolve_frames

        try:  # the scene's own checks, before the model starts or anything is written
            check_camera(bpy.context.scene)
            resolve_frames(bpy.context.scene, args.frames)
        except ValueError as exc:
            return _fail(str(exc))
    if predictions is None:
        assert checkpoint is not None
        error = start_model(python, checkpoint.resolve(), args.device, args.score_threshold)
        if error is not None:
            return _fail(error)
    name = package_name()
    if addon_utils.enable(name, default_set=True) is None:
        return _fail(f"could not enable the add-on {name}")
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = args.resolution
    scene.render.resolution_percentage = 100
    s = scene.instseg
    if checkpoint is not None:
        s.checkpoint = str(checkpoint.resolve())
    s.predict_samples = args.samples
    s.auto_threshold = args.score_threshold is None
    if args.score_threshold is not None:
        s.score_threshold = args.score_threshold
    s.match_iou_threshold = args.match_iou
    s.device = args.device
    s.show_in_camera = True
    out = out.resolve()
    if args.frames is not None:
        return _predict_frames(args, out, python)
    protocol.emit("progress", step=0, total=1, phase="render")
    try:
        bpy.ops.instseg.predict_view(python=python, output_dir=str(out),  # type: ignore[attr-defined]
                                     predictions_path=str(predictions.resolve()) if predictions else "")
    except RuntimeError as exc:
        return _fail(str(exc).removeprefix("Error: ").strip())
    state = bpy.context.window_manager.instseg_job
    result = {
        "out": str(out), "overlay": state.overlay_path, "predictions": str(predictions or out / "predictions.json"),
        "summary": state.summary,
        "selected": sorted(ob.name for ob in scene.objects if ob.select_get()),
        "matched": [{"object": r.object_name, "category": r.category, "score": r.score, "iou": r.iou}
                    for r in state.matched],
        "unmatched": [{"index": r.index, "category": r.category, "score": r.score} for r in state.unmatched],
        "missed": [r.object_name for r in state.missed],
    }
    if args.save_blend:
        saved = out / "scene.blend"
        image = bpy.data.images.get(state.overlay_image)
        if image is not None:
            image.pack()
        layer = bpy.data.images.get("InstSeg Overlay Layer")
        if layer is not None:
            layer.pack()
        bpy.ops.wm.save_as_mainfile(filepath=str(saved), copy=True)
        result["blend"] = str(saved)
    protocol.emit("progress", step=1, total=1, phase="done")
    protocol.emit("done", **result)
    return 0


def _predict_frames(args: argparse.Namespace, out: Path, python: str) -> int:
    """--frames: the Predict Frames operator (blocking), a progress event per frame, the summary in ``done``."""
    import bpy  # noqa: PLC0415

    from . import predict_frames

    def progress(ev: protocol.Event) -> None:
        protocol.emit("progress", **ev.data)

    predict_frames.PROGRESS_HOOKS.append(progress)
    try:
        bpy.ops.instseg.predict_frames(python=python, output_dir=str(out), frames=args.frames)  # type: ignore[attr-defined]
    except RuntimeError as exc:
        return _fail(str(exc).removeprefix("Error: ").strip())
    finally:
        predict_frames.PROGRESS_HOOKS.remove(progress)
    state = bpy.context.window_manager.instseg_job
    summary = read_json(out / predict_frames.SUMMARY_JSON)
    result = {
        "out": str(out), "frames": summary["frames"], "summary": state.summary,
        "summary_json": str(out / predict_frames.SUMMARY_JSON), "summary_md": str(out / predict_frames.SUMMARY_MD),
        "overlay": str(out / "overlay"), "predictions": str(out / "predictions"),
        "objects": [{k: o[k] for k in ("instance", "object", "category", "frames_in_view", "frames_found", "mean_iou")}
                    for o in summary["objects"]],
        "cancelled": "cancelled" in state.status,
    }
    if args.save_blend:
        saved = out / "scene.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(saved), copy=True)  # the sequences are referenced, not packed
        result["blend"] = str(saved)
    protocol.emit("done", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
