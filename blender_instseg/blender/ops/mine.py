"""Mine hard scenes: one round of the mining loop (``python -m blender_instseg.pipeline loop``) per press.

The loop runs under the Python with torch (it starts the trainer and evaluator from there) and
renders its new scenes with this Blender (``children.panel_generator_argv``, passed as ``--generator-cmd``).
Each press asks for one more round than the Mining Folder's loop.json has finished, so an
interrupted round is completed first rather than skipped. See docs/loop.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bpy

from ...core.fileio import read_json
from ...procs.argv import child_env, pipeline_argv
from ...procs.child import ChildResult
from ..children import panel_generator_argv
from ..props import resolve_paths, settings
from . import jobs
from .base import JobOperatorMixin, python_for


def finished_rounds(mining: Path) -> int:
    """Rounds marked done in ``mining/loop.json`` (0 when there is none yet)."""
    path = mining / "loop.json"
    if not path.is_file():
        return 0
    state = read_json(path, "loop state")
    rounds = state.get("rounds", []) if isinstance(state, dict) else []
    return sum(1 for rd in rounds if isinstance(rd, dict) and rd.get("status") == "done")


def mine_args(context: Any, python: str, generator_cmd: list[str]) -> list[str]:
    """The loop's command-line arguments for the scene's settings (one round more than finished)."""
    s = settings(context)
    paths = resolve_paths(context)
    if not (paths.dataset / "annotations_val.json").is_file():
        raise ValueError(f"dataset {paths.dataset} has no validation split to mine (annotations_val.json): "
                         "generate it with a validation fraction")
    if not paths.checkpoint.is_file():
        raise ValueError(f"checkpoint not found: {paths.checkpoint} (train first)")
    rounds = finished_rounds(paths.mining) + 1
    args = ["loop", "--data", str(paths.dataset), "--run", str(paths.mining), "--init", str(paths.checkpoint),
            "--rounds", str(rounds), "--budget", str(s.mining_budget), "--steps-per-round", str(s.mining_steps),
            "--strategy", s.mining_strategy, "--device", s.device, "--python-torch", python,
            "--generator-cmd", json.dumps(generator_cmd)]
    if s.heldout_dir:
        heldout = Path(bpy.path.abspath(s.heldout_dir))
        if not heldout.exists():
            raise ValueError(f"held-out set not found: {heldout}")
        args += ["--heldout", str(heldout)]
    return args


def _ap(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


class INSTSEG_OT_mine_hard_scenes(JobOperatorMixin, bpy.types.Operator):
    """Evaluate the model on the validation split, render new training scenes around the worst ones, fine-tune"""

    bl_idname = "instseg.mine_hard_scenes"
    bl_label = "Mine Hard Scenes (1 Round)"

    def build_spec(self, context: Any) -> jobs.JobSpec:
        python = python_for(self, context)
        paths = resolve_paths(context)
        generator = panel_generator_argv([])  # ends with "--": the loop appends its args
        args = mine_args(context, python, generator)
        paths.mining.mkdir(parents=True, exist_ok=True)
        rounds = args[args.index("--rounds") + 1]
        argv = pipeline_argv(python, args[0], args[1:])

        def on_done(ctx: Any, result: ChildResult) -> str:
            done = result.done.data if result.done is not None else {}
            if done.get("stopped"):
                return f"mining stopped; press again to finish round {rounds}"
            curve = done.get("heldout_mask_AP") or []
            measured = len(curve) >= 2 and isinstance(curve[-1], (int, float))
            held = f", held-out mask AP {_ap(curve[-2])} -> {_ap(curve[-1])}" if measured else ""
            return f"round {done.get('rounds', rounds)}{held}; checkpoint: {done.get('checkpoint')}"

        return jobs.JobSpec("mine", argv, on_done, env=child_env(), cwd=str(paths.mining),
                            label=f"mining hard scenes (round {rounds})")


classes = (INSTSEG_OT_mine_hard_scenes,)
