"""Predict View keeps one warm model server: reused across clicks, restarted when it must be, never orphaned.

The model tests use a real 2-step checkpoint and the real ``ml predict --serve`` child; the
restart/fallback rules of ``procs.server.ServerCall`` are checked with tiny scripted servers (no torch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

RES = 64
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, torch_python: str) -> Path:
    """A 2-step model on 64x64 shapes: junk predictions, but the real model, checkpoint and server."""
    from tests.shapes import make_shapes_dataset

    work = tmp_path_factory.mktemp("serve_model")
    data = make_shapes_dataset(work / "shapes", n_images=4, size=64, seed=2)
    run = work / "run"
    proc = subprocess.run([torch_python, "-m", "blender_instseg.ml", "train", "--data", str(data.parent), "--out",
                           str(run), "--steps", "2", "--batch-size", "2", "--image-size", "64", "--checkpoint-every",
                           "0", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return run / "last.pt"


@pytest.fixture()
def scene(addon, checkpoint: Path, tmp_path: Path):
    """Three cubes under an orthographic camera, the checkpoint set, every prediction kept."""
    from blender_instseg.blender.children import SERVERS

    SERVERS.stop_all()
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    sc = bpy.context.scene
    for x in (-2.0, 0.0, 2.0):
        bpy.ops.mesh.primitive_cube_add(location=(x, 0.0, 0.0))
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.data.type, cam.data.ortho_scale, cam.location = "ORTHO", 7.0, (0.0, 0.0, 10.0)
    sc.collection.objects.link(cam)
    sc.camera = cam
    sc.render.resolution_x = sc.render.resolution_y = RES
    sc.render.resolution_percentage = 100
    s = sc.instseg
    s.checkpoint = str(checkpoint)
    s.device = "cpu"
    s.predict_samples = 1
    s.score_threshold = 0.0
    s.auto_threshold = False
    s.match_iou_threshold = 0.01
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    yield sc
    SERVERS.stop_all()


def _outcome() -> tuple:
    """Everything a click leaves behind that the user sees: predictions file, selection, panel lists."""
    state = bpy.context.window_manager.instseg_job
    preds = json.loads((Path(state.overlay_path).parent / "predictions.json").read_text())
    selected = sorted(ob.name for ob in bpy.context.scene.objects if ob.select_get())
    matched = sorted((r.index, r.object_name, round(r.score, 5)) for r in state.matched)
    return preds, selected, matched, len(state.unmatched), sorted(r.object_name for r in state.missed)


def _tick_until_done(jobs) -> None:
    deadline = time.monotonic() + 60
    while jobs.tick() is not None:
        assert time.monotonic() < deadline, "timer path did not finish"
        time.sleep(0.02)


def test_clicks_reuse_one_warm_server_in_both_paths_and_unregister_stops_it(scene, torch_python: str) -> None:
    import addon_utils

    from blender_instseg.blender.children import SERVERS
    from blender_instseg.blender.ops import jobs

    state = bpy.context.window_manager.instseg_job
    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error
    server = SERVERS.current
    assert server is not None and server.alive and server.ready and server.served == 1
    first = _outcome()
    assert len(first[0]) > 0 and state.last_error == ""

    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error
    assert SERVERS.current is server and server.alive and server.served == 2
    assert _outcome() == first

    jobs.ASYNC_IN_BACKGROUND = True  # the click's timer path, ticked by hand
    try:
        assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}
        assert state.running and state.status == "predicting"  # warm: no "starting the model"
        _tick_until_done(jobs)
    finally:
        jobs.ASYNC_IN_BACKGROUND = False
        if bpy.app.timers.is_registered(jobs.tick):
            bpy.app.timers.unregister(jobs.tick)
    assert state.status == "predict finished" and state.last_error == ""
    assert SERVERS.current is server and server.served == 3
    assert _outcome() == first

    proc = server.job.proc
    addon_utils.disable("blender_instseg", default_set=True)
    try:
        assert proc.poll() is not None, "the warm server outlived the add-on"
        assert proc.returncode == 0  # a clean "stop", not a kill
    finally:
        assert addon_utils.enable("blender_instseg", default_set=True) is not None


def test_a_retrained_checkpoint_or_a_cancel_replaces_the_server(scene, checkpoint: Path, torch_python: str) -> None:
    from blender_instseg.blender.children import SERVERS
    from blender_instseg.blender.ops import jobs

    state = bpy.context.window_manager.instseg_job
    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error
    old = SERVERS.current
    st = checkpoint.stat()
    os.utime(checkpoint, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # "retrained"
    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error
    new = SERVERS.current
    assert new is not old and new.pid != old.pid and old.job.proc.poll() is not None

    jobs.ASYNC_IN_BACKGROUND = True
    try:
        assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}
        assert bpy.ops.instseg.cancel_job() == {"FINISHED"}
        _tick_until_done(jobs)
    finally:
        jobs.ASYNC_IN_BACKGROUND = False
        if bpy.app.timers.is_registered(jobs.tick):
            bpy.app.timers.unregister(jobs.tick)
    assert not state.running
    new.job.proc.wait(10)  # the server answers its request, then honours "stop"
    assert SERVERS.current is None or SERVERS.current is not new


# -- the restart / fallback rules, with scripted servers (no torch) ------------------------------

SCRIPTED = r"""
import json, sys
mode, marker = sys.argv[1], sys.argv[2]
if mode == "not-a-server":  # e.g. a predictor without --serve: exits before "ready", no error event
    sys.exit(1)
if mode == "startup-error":
    print(json.dumps({"event": "error", "message": "torch is not installed here"}), flush=True)
    sys.exit(3)
print(json.dumps({"event": "log", "message": "ready"}), flush=True)
for line in sys.stdin:
    if line.strip() == "stop":
        break
    req = json.loads(line)
    import os
    if mode == "always-crash" or (mode == "crash-once" and not os.path.exists(marker)):
        open(marker, "w").close()
        sys.stderr.write("Segmentation fault (simulated)\n")
        sys.exit(139)
    open(req["out"], "w").write("[]")
    print(json.dumps({"event": "result", "id": req["id"], "out": req["out"], "count": 0}), flush=True)
print(json.dumps({"event": "done"}), flush=True)
"""

ONE_SHOT = r"""
import json, sys
open(sys.argv[1], "w").write("[]")
print(json.dumps({"event": "done", "out": sys.argv[1]}), flush=True)
"""


def _call(tmp_path: Path, mode: str):
    from blender_instseg.procs.child import drive
    from blender_instseg.procs.server import ServerCall, ServerPool

    script = tmp_path / "server.py"
    script.write_text(SCRIPTED)
    one_shot = tmp_path / "one_shot.py"
    one_shot.write_text(ONE_SHOT)
    pool = ServerPool()
    call = ServerCall(pool, ("scripted", mode), [sys.executable, str(script), mode, str(tmp_path / "marker")],
                      {"image": "unused.png", "out": str(tmp_path / "p.json")},
                      fallback_argv=[sys.executable, str(one_shot), str(tmp_path / "fallback.json")], timeout=30)
    return pool, call, drive(call, name="predict")


def test_a_server_dying_mid_request_is_restarted_once(tmp_path: Path) -> None:
    pool, call, res = _call(tmp_path, "crash-once")
    try:
        assert res.ok and res.done.get("out") == str(tmp_path / "p.json") and call.restarts == 1
        assert pool.current is not None and pool.current.alive  # the restarted one stays warm
    finally:
        pool.stop_all()
    pool, call, res = _call(tmp_path, "always-crash")
    assert not res.ok and call.restarts == 1 and pool.current is None
    assert "exit code 139" in res.error and "Segmentation fault (simulated)" in res.error


def test_startup_errors_are_shown_and_non_servers_fall_back_to_the_one_shot_command(tmp_path: Path) -> None:
    pool, call, res = _call(tmp_path, "startup-error")
    assert not res.ok and res.error == "torch is not installed here" and call.fallback is None
    pool, call, res = _call(tmp_path, "not-a-server")
    assert res.ok and call.fallback is not None and (tmp_path / "fallback.json").is_file()
    assert pool.current is None


def test_with_the_models_threshold_the_view_keeps_what_scores_above_the_checkpoints_validated_one(
        scene, checkpoint: Path, tmp_path: Path, torch_python: str) -> None:
    """Model's Threshold (the default): the panel sends no threshold, the server uses the checkpoint's
    best-F1 one, and the overlay shows exactly the predictions at or above it."""
    state = bpy.context.window_manager.instseg_job
    s = scene.instseg
    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error  # threshold 0
    every = _outcome()[0]
    distinct = sorted({p["score"] for p in every})
    assert len(distinct) >= 2
    # halfway between two scores as written (rounded to 5 decimals): no prediction's score, rounded or
    # not, can sit on the cut, so "at or above it" means the same in the model and in this test
    k = len(distinct) // 2
    cut = (distinct[k - 1] + distinct[k]) / 2
    # the checkpoint is rewritten on the model side's Python: torch is not in Blender's
    tuned = tmp_path / "tuned.pt"
    edit = ("import sys, torch; ckpt = torch.load(sys.argv[1], weights_only=True); "
            "ckpt['history'] = [{'step': ckpt['step'], 'score_threshold_f1': float(sys.argv[3])}]; "
            "torch.save(ckpt, sys.argv[2])")
    proc = subprocess.run([torch_python, "-c", edit, str(checkpoint), str(tuned), repr(cut)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    s.checkpoint = str(tuned)
    s.auto_threshold = True
    s.score_threshold = 0.99  # not used with the model's threshold
    assert bpy.ops.instseg.predict_view(python=torch_python) == {"FINISHED"}, state.last_error
    kept = _outcome()[0]
    assert kept == [p for p in every if p["score"] >= cut] and 0 < len(kept) < len(every)
    assert len(state.matched) + len(state.unmatched) == len(kept)
