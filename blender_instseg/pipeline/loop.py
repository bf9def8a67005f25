"""The hard-scene mining loop: evaluate -> rank -> render variants of the worst scenes -> fine-tune.

Round r (1-based) of ``run_loop``:

1. ``evaluate``  ``ml evaluate`` the current checkpoint on DATASET's val split (the mining set);
2. ``plan``      score every val image (``ranking.score_images``) and write ``round_r/plan.json``:
                 variants of the worst images' seeds (``hard``), or nothing but a fresh generator
                 seed (``random``, the baseline);
3. ``generate``  render N images into ``round_r/data`` with DATASET's own generator config;
4. ``combine``   ``round_r/train/annotations_train.json`` = DATASET's train split + every round's
                 images so far (``core.concat``), ``annotations_val.json`` = DATASET's val split;
5. ``train``     ``ml train --init <current checkpoint> --steps S`` into ``round_r/run``;
6. ``heldout``   ``ml evaluate`` the new checkpoint on the held-out set (if given; never mined).

Each finished stage is recorded in RUN_DIR/loop.json (written atomically) with its command line,
seconds and results, so a killed loop rerun with the same arguments continues at the first
unfinished stage; the generator and the trainer resume their own partial work. Progress goes to
stdout as ``core.protocol`` JSON lines. No bpy and no torch in this process.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core import protocol
from ..core.cliargs import check_out_folder
from ..core.concat import concat_coco
from ..core.fileio import atomic_write_json, read_json
from ..core.plan import variant_seed, write_plan
from ..core.protocol import Event
from ..procs.argv import checkout_generate_script, generator_argv, ml_argv
from . import ranking
from .stages import StageError, StopSignal, run_stage

log = logging.getLogger(__name__)

STATE_FILE = "loop.json"
STAGES = ("evaluate", "plan", "generate", "combine", "train", "heldout")
STRATEGIES = ("hard", "random")
#: config keys a rerun may change (the rest must match the run folder's loop.json)
MUTABLE = ("rounds", "python_torch", "python_bpy", "generator_cmd", "device", "generator_workers")


class LoopError(RuntimeError):
    """The loop cannot go on; one line meant for a person."""


@dataclass
class LoopConfig:
    data: str
    run: str
    rounds: int = 1
    budget: int = 20
    strategy: str = "hard"
    steps_per_round: int = 200
    heldout: str | None = None
    init: str | None = None  # starting checkpoint; default RUN_DIR/last.pt
    per_seed: int = 4  # variants per mined seed (hard)
    score_threshold: float = 0.3
    image_size: int | None = None  # default: the starting run's training size
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0  # training seed of every round
    device: str = "auto"
    python_torch: str = sys.executable
    python_bpy: str = sys.executable
    generator_cmd: list[str] | None = None  # full generator command prefix (the Blender panel passes its own)
    generator_workers: int = 1
    weights: dict[str, float] = field(default_factory=lambda: asdict(ranking.ScoreWeights()))

    def check(self) -> "LoopConfig":
        if self.strategy not in STRATEGIES:
            raise LoopError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for name in ("rounds", "budget", "steps_per_round", "per_seed", "generator_workers"):
            if getattr(self, name) < 1:
                raise LoopError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.score_threshold <= 1.0:  # NaN fails too
            raise LoopError(f"--score-threshold must be in [0, 1], got {self.score_threshold}")
        if self.image_size is not None and (self.image_size < 32 or self.image_size % 32):
            raise LoopError(f"--image-size must be a positive multiple of 32, got {self.image_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise LoopError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not self.lr >= 0:
            raise LoopError(f"--lr must be >= 0, got {self.lr}")
        check_run_folder(self.run)
        data = Path(self.data)
        if not data.is_dir():
            raise LoopError(f"dataset folder not found: {data}")
        for split in ("train", "val"):
            if not (data / f"annotations_{split}.json").is_file():
                raise LoopError(f"{data} has no annotations_{split}.json: the loop mines the val split and trains "
                                "on the train split (generate with --val-fraction)")
        if not (data / "config.json").is_file():
            raise LoopError(f"{data} has no config.json: the loop renders new images with the dataset's own "
                            "generator config")
        if self.heldout is not None and not Path(self.heldout).exists():
            raise LoopError(f"held-out dataset not found: {self.heldout}")
        init = Path(self.start_checkpoint())
        if not init.is_file():
            raise LoopError(f"starting checkpoint not found: {init} (train first, or pass --init CKPT)")
        return self

    def start_checkpoint(self) -> str:
        return self.init or str(Path(self.run) / "last.pt")


def check_run_folder(value: str) -> None:
    """--run: a folder to create or continue; never '' (an unset variable), a file, or a path under a file."""
    try:
        check_out_folder(value, "--run")
    except ValueError as exc:
        raise LoopError(str(exc)) from None


Emit = Callable[..., None]


def _default_emit(event: str, **data: Any) -> None:
    protocol.emit(event, **data)


class Loop:
    """One run folder's loop; ``run()`` does the rounds still missing."""

    def __init__(self, cfg: LoopConfig, emit: Emit = _default_emit, stop: StopSignal | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run).resolve()
        self.data = Path(cfg.data).resolve()
        self.emit = emit
        self.stop = stop or StopSignal()
        self.state = self._load_state()
        self._last_progress = 0.0

    # -- state -----------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    def _config_dict(self) -> dict[str, Any]:
        d = asdict(self.cfg)
        d["data"] = str(self.data)
        d["run"] = str(self.run_dir)
        d["heldout"] = str(Path(self.cfg.heldout).resolve()) if self.cfg.heldout else None
        d["init"] = str(Path(self.cfg.start_checkpoint()).resolve())
        return d

    def _load_state(self) -> dict[str, Any]:
        conf = self._config_dict()
        if not self.state_path.exists():
            return {"version": 1, "config": conf, "start": {}, "rounds": []}
        state = read_json(self.state_path, "loop state")
        if not isinstance(state, dict) or not isinstance(state.get("rounds"), list):
            raise LoopError(f"{self.state_path} is not a loop state file; use another --run")
        old = state.get("config", {})
        for key in sorted(set(old) | set(conf)):
            if key not in MUTABLE and old.get(key) != conf.get(key):
                raise LoopError(f"{self.state_path} was made with other settings ({key}: {old.get(key)!r} vs "
                                f"{conf.get(key)!r}); use the same settings or another --run")
        state["config"] = conf
        return state

    def save(self) -> None:
        atomic_write_json(self.state_path, self.state, indent=1)

    def _round(self, r: int) -> dict[str, Any]:
        rounds = self.state["rounds"]
        while len(rounds) < r:
            rounds.append({"round": len(rounds) + 1, "status": "running", "stages": {}})
        return rounds[r - 1]

    def finished_rounds(self) -> int:
        return sum(1 for rd in self.state["rounds"] if rd.get("status") == "done")

    def checkpoint_before(self, r: int) -> str:
        if r == 1:
            return str(Path(self.cfg.start_checkpoint()).resolve())
        return str(self.state["rounds"][r - 2]["stages"]["train"]["checkpoint"])

    # -- events ----------------------------------------------------------------------------------
    def _progress(self, r: int, stage: str, frac: float = 0.0, detail: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < 0.5:
            return
        self._last_progress = now
        per = len(STAGES)
        step = (r - 1) * per + STAGES.index(stage) + max(0.0, min(1.0, frac))
        phase = f"round {r}/{self.cfg.rounds}: {stage}" + (f" {detail}" if detail else "")
        self.emit("progress", step=round(step, 3), total=self.cfg.rounds * per, phase=phase, round=r, stage=stage)

    def _child_events(self, r: int, stage: str) -> Callable[[Event], None]:
        def on_event(ev: Event) -> None:
            if ev.event == "progress":
                step, total = ev.get("step"), ev.get("total")
                if isinstance(step, (int, float)) and isinstance(total, (int, float)) and total > 0:
                    detail = f"{int(step)}/{int(total)}"
                    loss = ev.get("loss")
                    if isinstance(loss, (int, float)):
                        detail += f" loss {loss:.3f}"
                    self._progress(r, stage, float(step) / float(total), detail)
            elif ev.event == "error":
                log.debug("%s: %s", stage, ev.message)
        return on_event

    # -- stages ----------------------------------------------------------------------------------
    def _stage(self, r: int, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        rd = self._round(r)
        done = rd["stages"].get(name)
        if done is not None and done.get("done"):
            return done
        if self.stop.is_set():
            raise _Stopped()
        self._progress(r, name, force=True)
        self.emit("log", message=f"round {r}: {name}")
        t0 = time.monotonic()
        try:
            result = fn()
        except StageError:
            if self.stop.is_set():  # the child was stopped or terminated on request
                raise _Stopped() from None
            raise
        if result.get("stopped"):
            raise _Stopped()
        result["seconds"] = round(time.monotonic() - t0, 2)
        result["done"] = True
        rd["stages"][name] = result
        self.save()
        return result

    def _evaluate(self, r: int, stage: str, checkpoint: str, data: str, out: Path) -> dict[str, Any]:
        argv = ml_argv(self.cfg.python_torch, "evaluate",
                       ["--checkpoint", checkpoint, "--data", data, "--out", str(out), "--device", self.cfg.device,
                        "--score-threshold", str(self.cfg.score_threshold), "--no-plots"])
        done = run_stage(stage, argv, self._child_events(r, stage), cwd=self.run_dir, stop=self.stop)
        metrics = read_json(out / "metrics.json", "metrics")
        return {"command": argv, "report": str(out), "predictions": done.get("predictions", str(out / "predictions.json")),
                "metrics": summary(metrics)}

    def _generator_prefix(self, args: list[str]) -> list[str]:
        if self.cfg.generator_cmd:
            return [*self.cfg.generator_cmd, *args]
        return generator_argv(self.cfg.python_bpy, args, script=checkout_generate_script())

    def _used_variants(self, r: int) -> dict[int, int]:
        used: dict[int, int] = {}
        for rd in self.state["rounds"][: r - 1]:
            for item in rd["stages"].get("plan", {}).get("plan", []):
                used[item["seed"]] = max(used.get(item["seed"], 0), item["first"] + item["count"])
        return used

    def _plan(self, r: int, rdir: Path) -> dict[str, Any]:
        ev = self._round(r)["stages"]["evaluate"]
        if self.cfg.strategy == "random":
            conf = read_json(self.data / "config.json", "dataset config")
            gseed = variant_seed(int(conf.get("seed", 0)), 1_000_000 + r)
            return {"strategy": "random", "generator_seed": gseed, "plan": [],
                    "why": "baseline: fresh scenes from a new generator seed"}
        scores = ranking.score_images(self.data / "annotations_val.json", ev["predictions"],
                                      score_threshold=self.cfg.score_threshold,
                                      weights=ranking.ScoreWeights(**self.cfg.weights))
        chosen = ranking.select_seeds(scores, self.cfg.budget, self.cfg.per_seed, self._used_variants(r))
        path = write_plan(rdir / "plan.json", chosen)
        return {"strategy": "hard", "plan_file": str(path), "plan": chosen,
                "ranking": [s.to_dict() for s in scores[:50]],
                "mean_score": round(sum(s.score for s in scores) / max(1, len(scores)), 6)}

    def _generate(self, r: int, rdir: Path) -> dict[str, Any]:
        pl = self._round(r)["stages"]["plan"]
        out = rdir / "data"
        args = ["--out", str(out), "--config", str(self.data / "config.json"), "--val-fraction", "0",
                "--no-preview", "--progress", "jsonl", "--workers", str(self.cfg.generator_workers)]
        if pl["strategy"] == "hard":
            args += ["--variants-of", pl["plan_file"]]
        else:
            args += ["--num-images", str(self.cfg.budget), "--seed", str(pl["generator_seed"])]
        argv = self._generator_prefix(args)
        done = run_stage("generate", argv, self._child_events(r, "generate"), cwd=self.run_dir, stop=self.stop)
        return {"command": argv, "out": str(out), "images": done.get("images"), "stopped": bool(done.get("stopped"))}

    def _combine(self, r: int, rdir: Path) -> dict[str, Any]:
        out = rdir / "train"
        sources = [self.data / "annotations_train.json"]
        sources += [Path(self.state["rounds"][k]["stages"]["generate"]["out"]) / "annotations.json" for k in range(r)]
        counts = concat_coco(sources, out / "annotations_train.json")
        concat_coco([self.data / "annotations_val.json"], out / "annotations_val.json")
        return {"data": str(out), "sources": [str(s) for s in sources], **counts}

    def _train_recipe(self) -> list[str]:
        """Image size, batch size and lr: the loop's options, else the starting run's own (its config.json)."""
        saved: dict[str, Any] = {}
        conf_path = Path(self.cfg.start_checkpoint()).parent / "config.json"
        if conf_path.is_file():
            try:
                saved = dict(read_json(conf_path, "run config").get("train_config", {}))
            except (ValueError, AttributeError):
                saved = {}
        args = []
        for flag, mine, key in (("--image-size", self.cfg.image_size, "image_size"),
                                ("--batch-size", self.cfg.batch_size, "batch_size"), ("--lr", self.cfg.lr, "lr")):
            value = mine if mine is not None else saved.get(key)
            if value is not None:
                args += [flag, str(value)]
        return args

    def _train(self, r: int, rdir: Path) -> dict[str, Any]:
        run = rdir / "run"
        data = self._round(r)["stages"]["combine"]["data"]
        args = ["--data", data, "--out", str(run), "--steps", str(self.cfg.steps_per_round), "--device",
                self.cfg.device, "--seed", str(self.cfg.seed)]
        if (run / "last.pt").is_file():
            args.append("--resume")  # a killed round: the trainer continues its own run
        else:
            args += ["--init", self.checkpoint_before(r), *self._train_recipe()]
        argv = ml_argv(self.cfg.python_torch, "train", args)
        done = run_stage("train", argv, self._child_events(r, "train"), cwd=self.run_dir, stop=self.stop)
        return {"command": argv, "checkpoint": str(done.get("checkpoint") or run / "last.pt"),
                "step": done.get("step"), "train_seconds": done.get("train_seconds"),
                "stopped": bool(done.get("stopped"))}

    # -- the rounds --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Do every round up to ``cfg.rounds`` that is not done; returns the ``done`` event data."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.save()
        stopped = False
        try:
            if self.cfg.heldout and not self.state["start"].get("done"):
                self.emit("log", message="held-out baseline of the starting checkpoint")
                t0 = time.monotonic()
                start = self._evaluate(1, "heldout", self.checkpoint_before(1), self.cfg.heldout,
                                       self.run_dir / "start_heldout")
                self.state["start"] = {**start, "checkpoint": self.checkpoint_before(1), "done": True,
                                       "seconds": round(time.monotonic() - t0, 2)}
                self.save()
            for r in range(1, self.cfg.rounds + 1):
                self._run_round(r)
        except _Stopped:
            stopped = True
        except StageError:
            if not self.stop.is_set():
                raise
            stopped = True
        return self.result(stopped)

    def _run_round(self, r: int) -> None:
        rd = self._round(r)
        if rd.get("status") == "done":
            return
        rdir = self.run_dir / f"round_{r}"
        rdir.mkdir(parents=True, exist_ok=True)
        before = self.checkpoint_before(r)
        rd["checkpoint_before"] = before
        self._stage(r, "evaluate", lambda: self._evaluate(r, "evaluate", before, str(self.data), rdir / "eval"))
        self._stage(r, "plan", lambda: self._plan(r, rdir))
        self._stage(r, "generate", lambda: self._generate(r, rdir))
        self._stage(r, "combine", lambda: self._combine(r, rdir))
        train = self._stage(r, "train", lambda: self._train(r, rdir))
        if self.cfg.heldout:
            self._stage(r, "heldout", lambda: self._evaluate(r, "heldout", train["checkpoint"], str(self.cfg.heldout),
                                                            rdir / "heldout"))
        rd["checkpoint_after"] = train["checkpoint"]
        rd["mining_before"] = rd["stages"]["evaluate"]["metrics"]
        prev = self.state["start"] if r == 1 else self.state["rounds"][r - 2]["stages"].get("heldout", {})
        rd["heldout_before"] = prev.get("metrics")
        rd["heldout_after"] = rd["stages"].get("heldout", {}).get("metrics")
        rd["images_added"] = rd["stages"]["generate"].get("images")
        rd["seconds"] = round(sum(s.get("seconds", 0.0) for s in rd["stages"].values()), 2)
        rd["status"] = "done"
        self.save()
        metrics = {"round": r}
        if rd["heldout_after"]:
            metrics.update({f"heldout_{k}": v for k, v in rd["heldout_after"].items()})
        self.emit("eval", step=r, metrics=metrics)
        self._progress(r, STAGES[-1], 1.0, "done", force=True)

    def result(self, stopped: bool) -> dict[str, Any]:
        rounds = self.state["rounds"]
        last = next((rd["checkpoint_after"] for rd in reversed(rounds) if rd.get("status") == "done"), None)
        return {"loop": str(self.state_path), "rounds": self.finished_rounds(), "stopped": stopped,
                "checkpoint": last or self.checkpoint_before(1), "strategy": self.cfg.strategy,
                "heldout_mask_AP": heldout_curve(self.state)}


class _Stopped(Exception):
    pass


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers loop.json keeps from a metrics.json."""
    segm, bnd, at = metrics.get("segm", {}), metrics.get("boundary", {}), metrics.get("at_threshold", {})
    return {"mask_AP": segm.get("AP"), "mask_AP50": segm.get("AP50"), "boundary_AP": bnd.get("AP"),
            "recall": at.get("recall"), "precision": at.get("precision"), "images": metrics.get("counts", {}).get("images")}


def heldout_curve(state: dict[str, Any]) -> list[float | None]:
    """Held-out mask AP of the starting checkpoint, then after each finished round (None when not measured)."""
    start = (state.get("start") or {}).get("metrics") or {}
    curve = [start.get("mask_AP")]
    for rd in state.get("rounds", []):
        if rd.get("status") == "done":
            curve.append((rd.get("heldout_after") or {}).get("mask_AP"))
    return curve
