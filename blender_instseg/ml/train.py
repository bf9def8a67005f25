"""``train``: fit a model of the zoo (``--model``, default SOLOv2-lite) on a COCO dataset, streaming protocol events on stdout.

Built for being driven by Blender: JSON lines on stdout, a clean stop (checkpoint first) on
SIGINT/SIGTERM or a ``stop`` line on stdin, atomic checkpoints, and ``--resume`` that continues the
exact step sequence (data order and augmentation depend only on (seed, step); optimizer and torch
RNG state are in the checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..core import protocol
from ..core.fileio import atomic_write_json, atomic_write_text, remove_stale_temp_files
from .checkpoint import FORMAT, CheckpointError, categories_match, load_checkpoint, save_checkpoint
from .cli_args import MODEL_SWITCHES, check_fraction, check_image_size
from .data import (DataError, EpochBatches, InstanceDataset, check_images_readable, class_agnostic, collate,
                   resolve_dataset)
from .device import autocast, check_precision, resolve_device
from .ema import WeightEMA
from .models import DEFAULT_ARCH, ModelConfigBase, architecture, build_model, config_from_dict
from .pretrained import load_init_weights, resolve_init
from ..core.cliargs import check_out_folder
from .train_config import DEFAULT_EPOCHS, AugmentConfig, TrainConfig

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGINT/SIGTERM or a ``stop`` line on stdin; checked between steps."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
        self.event.set()

    def install(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            if self.event.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.set(signal.Signals(signum).name)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        if sys.stdin is not None and not sys.stdin.closed and not sys.stdin.isatty():
            threading.Thread(target=self._watch_stdin, daemon=True, name="stdin-stop").start()

    def _watch_stdin(self) -> None:
        try:
            for line in sys.stdin:
                if protocol.is_stop_command(line):
                    self.set("stop command")
                    return
        except (OSError, ValueError):
            return


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup, then cosine decay to 5% of the peak over the run's progress (0..1)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class ProgressBar:
    """One-line bar on stderr, only when a person is watching (stderr is a terminal)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()

    def update(self, step: int, total: int, loss: float, eta: float) -> None:
        if not self.enabled:
            return
        frac = min(1.0, step / max(total, 1))
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r[{bar:<30}] {step}/{total} loss {loss:.3f} eta {eta:5.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


#: A test hook, off by default: with INSTSEG_TRAIN_TRACE=DIR each process (each DDP rank) appends one
#: JSON line per step to DIR/rank<R>.jsonl (``StepTrace``). Rank 0 alone emits events and saves, so
#: without it nothing shows what the other ranks trained on; tests/ml/test_ddp.py reads it.
TRACE_ENV = "INSTSEG_TRAIN_TRACE"


class StepTrace:
    """Digests of what one rank did in each step: the images it trained on and its weights after the step."""

    def __init__(self, folder: str | Path, rank: int) -> None:
        self.path = Path(folder) / f"rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _digest(*tensors: torch.Tensor) -> str:
        import hashlib

        h = hashlib.sha256()
        for t in tensors:
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def write(self, step: int, images: torch.Tensor, model: torch.nn.Module) -> None:
        import json

        record = {"step": step, "images": [self._digest(im) for im in images],
                  "weights": self._digest(*model.parameters())}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


class Trainer:
    def __init__(self, cfg: TrainConfig, model_overrides: dict[str, Any] | None = None, device: str = "auto",
                 resume: bool = False, arch: str | None = None, switches: dict[str, bool] | None = None,
                 start: str = "") -> None:
        """``arch``: registry name for a new run (default solov2); with --resume/--init it must match the checkpoint's.
        ``switches``: the model switches given (``model_switches``); a new run applies them, --resume/--init
        keep the checkpoint's network. ``start``: what a new run starts from, for the log (``resolve_init``)."""
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.rank, self.world, local = _dist_info()
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
            dist.init_process_group(backend)
            if backend == "nccl":
                torch.cuda.set_device(local)
                device = f"cuda:{local}"
        self.device = resolve_device(device)
        self.main = self.rank == 0
        ckpt = None
        if resume:
            last = self.run_dir / "last.pt"
            if not last.is_file():
                raise CheckpointError(f"nothing to resume: {last} does not exist")
            ckpt = load_checkpoint(last, map_location="cpu")
            missing = [k for k in ("optimizer", "step", "rng", "train_config") if k not in ckpt]
            if missing:
                raise CheckpointError(f"cannot resume from {last}: it lacks the training state ({', '.join(missing)})")
            saved = dict(ckpt.get("train_config", {}))
            # the stop criterion and logistics come from this command line; the recipe from the run
            for k in ("epochs", "minutes", "steps", "data", "out", "checkpoint_every", "eval_every", "save_minutes", "workers"):
                saved[k] = getattr(cfg, k)
            saved.setdefault("ema_decay", 0.0)
            saved.setdefault("precision", "fp32")
            try:
                self.cfg = cfg = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
            except TypeError:
                raise CheckpointError(f"cannot resume from {last}: its train_config is incomplete") from None
        elif (self.run_dir / "last.pt").exists():
            raise CheckpointError(f"{self.run_dir} already holds a run (last.pt); pass --resume or choose another --out")
        self.train_src, self.val_src = resolve_dataset(cfg.data, val_split=cfg.val_split, val_fraction=cfg.val_fraction,
                                                       seed=cfg.seed)
        if cfg.class_agnostic:
            self.train_src = class_agnostic(self.train_src)
            self.val_src = class_agnostic(self.val_src) if self.val_src is not None else None
        # every image decodes, before the run folder exists: a corrupt PNG found at step 500 would
        # leave a half-made run behind
        check_images_readable([r.path for r in self.train_src.records + (self.val_src.records if self.val_src else [])])
        init = None
        if ckpt is None and cfg.init:
            init = load_checkpoint(cfg.init, map_location="cpu")
            if model_overrides:
                raise ValueError("--model-config cannot change the network of an --init checkpoint")
        if ckpt is not None or init is not None:
            src = ckpt if ckpt is not None else init
            assert src is not None
            if ckpt is not None and not categories_match(src["categories"], self.train_src.categories):
                raise DataError("dataset categories differ from the checkpoint's; cannot resume on this dataset")
            # an --init checkpoint of other categories gives everything but its category head (load_init_weights)
            self.model_cfg = config_from_dict({**src["model_config"], "num_classes": len(self.train_src.categories)})
            if arch is not None and arch != self.model_cfg.arch:
                raise ValueError(f"--model {arch} differs from the checkpoint's model {self.model_cfg.arch}")
        else:
            self.model_cfg = new_model_config(arch or DEFAULT_ARCH, len(self.train_src.categories), switches or {},
                                              model_overrides)
        self.categories = self.train_src.categories
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.model_cfg).to(self.device)
        self.optim = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        if start:  # logged once every check has passed: a refused run prints its one error line only
            log.info("a new run starts from %s", start)
        if init is not None:
            load_init_weights(self.model, init, self.categories, Path(str(cfg.init)).name)
        self.ema = WeightEMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.precision = check_precision(cfg.precision)
        if ckpt is not None:
            try:
                self._restore(ckpt)
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError):
                raise CheckpointError(f"cannot resume from {self.run_dir / 'last.pt'}: its training state does not "
                                      "fit this model (optimizer, step or RNG state)") from None
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                               find_unused_parameters=True)
        model_cls = architecture(self.model_cfg.arch)[1]
        self.dataset = InstanceDataset(self.train_src, self.train_src.category_ids, cfg.image_size, cfg.seed,
                                       AugmentConfig(**cfg.augment), make_targets=model_cls.make_targets(self.model_cfg),
                                       amodal=model_cls.needs_amodal, crop_bank=model_cls.crop_bank(self.model_cfg))
        self.steps_per_epoch = max(1, len(self.dataset) // (cfg.batch_size * self.world))
        self.total_steps = self._total_steps()
        self.stop = StopFlag()
        trace_dir = os.environ.get(TRACE_ENV)
        self.trace = StepTrace(trace_dir, self.rank) if trace_dir else None

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """--resume: weights, optimizer, step, time, history and RNG state from ``ckpt``."""
        # with an EMA, "model" holds the averaged weights and "train_weights" the live ones
        self.model.load_state_dict(ckpt.get("train_weights", ckpt["model"]))
        if self.ema is not None:
            self.ema.model.load_state_dict(ckpt["model"])
        self.optim.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.history = list(ckpt.get("history", []))
        torch.set_rng_state(ckpt["rng"]["torch"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])

    def _total_steps(self) -> int | None:
        c = self.cfg
        if c.steps is not None:
            return int(c.steps)
        if c.epochs is not None:
            return max(1, int(round(c.epochs * self.steps_per_epoch)))
        return None  # minutes

    # ------------------------------------------------------------------ events and files
    def emit(self, event: str, **data: Any) -> None:
        if not self.main:
            return
        protocol.emit(event, **data)
        try:
            with open(self.run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
                fh.write(protocol.encode_event(event, **data) + "\n")
        except OSError:
            pass

    def write_config(self) -> None:
        if self.main:
            atomic_write_json(self.run_dir / "config.json", {
                "model_config": self.model_cfg.to_dict(), "categories": self.categories,
                "train_config": asdict(self.cfg), "format": FORMAT}, indent=2)

    def save(self, extra_name: str | None = None) -> Path | None:
        if not self.main:
            return None
        payload = {"model": self.inference_model().state_dict(), "optimizer": self.optim.state_dict(), "step": self.step,
                   "train_seconds": self.train_seconds, "rng": _rng_state(), "model_config": self.model_cfg.to_dict(),
                   "categories": self.categories, "train_config": asdict(self.cfg), "history": self.history}
        if self.ema is not None:
            payload["train_weights"] = self.model.state_dict()
        last = save_checkpoint(self.run_dir / "last.pt", payload)
        named = save_checkpoint(self.run_dir / (extra_name or f"checkpoint-{self.step:06d}.pt"), payload)
        if extra_name is None:
            olds = sorted(self.run_dir.glob("checkpoint-*.pt"))
            for old in olds[: max(0, len(olds) - self.cfg.keep_checkpoints)]:
                old.unlink(missing_ok=True)
        self.emit("checkpoint", path=str(named), step=self.step)
        return last

    def evaluate(self) -> dict[str, float] | None:
        if not self.main or self.val_src is None:
            return None
        from .quick_eval import mask_ap

        model = self.inference_model()
        was_training = model.training
        model.eval()
        try:
            metrics = mask_ap(model, self.val_src, self.cfg.image_size, self.device)
        finally:
            model.train(was_training)
        record = {"step": self.step, "train_seconds": round(self.train_seconds, 2), **metrics}
        self.history.append(record)
        self.emit("eval", step=self.step, metrics=metrics, train_seconds=round(self.train_seconds, 2))
        return metrics

    def inference_model(self) -> torch.nn.Module:
        """The network evaluate and predict get: the weights' moving average when the run keeps one."""
        return self.ema.model if self.ema is not None else self.model

    # ------------------------------------------------------------------ loop
    def progress_fraction(self) -> float:
        if self.total_steps is not None:
            return self.step / max(1, self.total_steps)
        return self.train_seconds / max(1e-9, 60.0 * float(self.cfg.minutes or 0))

    def finished(self) -> bool:
        if self.total_steps is not None:
            return self.step >= self.total_steps
        return self.train_seconds >= 60.0 * float(self.cfg.minutes or 0)

    def prepare_run_dir(self) -> None:
        """Create RUN_DIR; on a resume, first clear what a killed run left: the atomic writer's temporary
        files (partial checkpoints) and the events of the steps the resume redoes."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.main:
            return
        for p in remove_stale_temp_files(self.run_dir):
            log.info("removed %s, a partial file of a killed run", p.name)
        if self.step > 0:
            dropped = rewind_events(self.run_dir / "events.jsonl", self.step)
            self.emit("log", message=f"resumed at step {self.step}" + (f"; dropped {dropped} event(s) of the steps "
                      "after it, which this run redoes" if dropped else ""), resumed_from_step=self.step,
                      train_seconds=round(self.train_seconds, 2), dropped_events=dropped)

    def run(self) -> int:
        cfg = self.cfg
        self.prepare_run_dir()
        self.write_config()
        self.stop.install()
        sampler = EpochBatches(len(self.dataset), cfg.batch_size, cfg.seed, start_step=self.step,
                               total_steps=None, rank=self.rank, world=self.world)
        # its own generator: iter() would otherwise draw a worker base seed from the global torch RNG
        # right after a resume restored it, and models that sample (point head, RPN/RoI sampling)
        # would see another random stream than the uninterrupted run
        # workers are spawned, not forked: a fork of this process (its OpenMP pool has run while the
        # model was built) could leave a worker waiting forever on a lock a parent thread held
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.workers,
                                             collate_fn=collate, persistent_workers=cfg.workers > 0,
                                             generator=torch.Generator().manual_seed(cfg.seed + self.step),
                                             multiprocessing_context="spawn" if cfg.workers > 0 else None)
        net = self.ddp or self.model
        self.model.train()
        bar = ProgressBar()
        pending_minutes = sorted(m for m in cfg.save_minutes if m * 60 > self.train_seconds)
        last_emit = 0.0
        loss_avg: float | None = None
        stopped = ""
        self.emit("log", message=f"training on {self.device} ({torch.get_num_threads()} threads, {self.precision}), "
                  f"{len(self.dataset)} train / {len(self.val_src.records) if self.val_src else 0} val images, "
                  f"{sum(p.numel() for p in self.model.parameters())} parameters, from step {self.step}")
        it = iter(loader)
        while not self.finished():
            if self._should_stop():
                stopped = self.stop.reason or "stop"
                break
            t0 = time.perf_counter()
            images, targets = next(it)
            images = images.to(self.device, non_blocking=True)
            targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
            lr = lr_at(cfg, self.step, self.progress_fraction())
            for g in self.optim.param_groups:
                g["lr"] = lr
            with autocast(self.precision, self.device):
                losses = net(images, targets)
            loss = sum(v.float() for v in losses.values())
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optim.step()
            self.step += 1
            if self.ema is not None:
                self.ema.update(self.model, self.step)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.train_seconds += time.perf_counter() - t0
            if self.trace is not None:
                self.trace.write(self.step, images, self.model)
            value = float(loss.detach())
            loss_avg = value if loss_avg is None else 0.9 * loss_avg + 0.1 * value
            now = time.perf_counter()
            if now - last_emit > 0.5 or self.step == 1 or self.finished():
                last_emit = now
                rate = self.step / max(self.train_seconds, 1e-9) if self.train_seconds else 0.0
                if self.total_steps is not None:
                    total = self.total_steps
                    eta = (total - self.step) * self.train_seconds / max(self.step, 1)
                else:
                    budget = 60.0 * float(cfg.minutes or 0)
                    eta = max(0.0, budget - self.train_seconds)
                    total = max(self.step, int(round(self.step / max(self.train_seconds, 1e-9) * budget)))
                self.emit("progress", step=self.step, total=total, loss=value, loss_avg=loss_avg, eta_s=eta, lr=lr,
                          epoch=self.step / self.steps_per_epoch, images_per_s=rate * cfg.batch_size * self.world,
                          **{f"loss_{k}": float(v.detach()) for k, v in losses.items()})
                bar.update(self.step, total, loss_avg, eta)
            while pending_minutes and self.train_seconds >= pending_minutes[0] * 60:
                self.save(extra_name=f"minute-{pending_minutes.pop(0):06.2f}.pt")
            if cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0 and not self.finished():
                self.save()
            if cfg.eval_every > 0 and self.step % cfg.eval_every == 0 and not self.finished():
                self.evaluate()
        bar.close()
        last = self.save()
        metrics = None
        if not stopped and self.val_src is not None:
            metrics = self.evaluate()
            self.save()  # keep the eval in the checkpoint's history
        self.emit("done", checkpoint=str(self.run_dir / "last.pt") if last or self.main else None, step=self.step,
                  train_seconds=round(self.train_seconds, 2), stopped=bool(stopped), reason=stopped or None,
                  metrics=metrics)
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
            # A rank stopped early by a signal aborts now and then while the interpreter shuts down
            # ("terminate called without an active exception": a C++ thread left joinable), which
            # torchrun reports as a failed run although everything is saved. Nothing is left to do.
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(0)
        return 0

    def _should_stop(self) -> bool:
        flag = self.stop.event.is_set()
        if self.world > 1:
            import torch.distributed as dist

            t = torch.tensor([1.0 if flag else 0.0], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item() > 0)
            if flag and not self.stop.reason:
                self.stop.reason = "stop on another rank"
        return flag




def rewind_events(path: Path, step: int) -> int:
    """Make RUN_DIR/events.jsonl one history again before a resume from ``step``: the events of the
    steps after it (which the resume redoes) and a line torn by a kill are dropped. Returns how many."""
    import json

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        at = event.get("step")
        if isinstance(at, (int, float)) and not isinstance(at, bool) and at > step:
            continue
        kept.append(line)
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _split_pairs(text: str) -> list[str]:
    """Split on commas outside brackets, so list values like ``grids=[40,24,12]`` stay whole."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += (ch in "[(") - (ch in "])")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_overrides(text: str, config_cls: type[ModelConfigBase] | None = None) -> dict[str, Any]:
    """``--model-config K=V,...`` -> settings of ``config_cls`` (default: SOLOv2's), values as JSON where they parse."""
    import json

    cls = config_cls or architecture(DEFAULT_ARCH)[0]
    out: dict[str, Any] = {}
    for part in _split_pairs(text):
        if "=" not in part:
            raise ValueError(f"--model-config expects K=V pairs, got {part!r}")
        k, v = part.split("=", 1)
        k = k.strip()
        if k not in cls.settable():
            raise ValueError(f"unknown or fixed setting of model {cls.arch} in --model-config: {k}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
        out[k] = cls.coerce(k, out[k])
    return out


def model_switches(args: argparse.Namespace) -> dict[str, bool]:
    """The model switches (``cli_args.MODEL_SWITCHES``) given on the command line: NAME -> value."""
    return {name: getattr(args, name) for name in MODEL_SWITCHES if getattr(args, name, None) is not None}


def new_model_config(arch: str, num_classes: int, switches: dict[str, bool],
                     overrides: dict[str, Any] | None) -> ModelConfigBase:
    """The config of a fresh run: the architecture's defaults, the data set's class count, the
    overrides and the model switches given (a switch not given keeps the architecture's default)."""
    cfg_cls = architecture(arch)[0]
    kw: dict[str, Any] = {"num_classes": num_classes, **(overrides or {})}
    for name, value in switches.items():
        if name not in cfg_cls.train_switches:
            flag = f"--{'' if value else 'no-'}{name.replace('_', '-')}"
            raise ValueError(f"{flag} applies to {MODEL_SWITCHES[name][0]} only, not to --model {arch}")
        kw[name] = value
    return cfg_cls(**kw)


def check_args(args: argparse.Namespace) -> None:
    """Every check of train's arguments alone (no files read): all before anything is written."""
    for name in ("epochs", "minutes", "steps", "batch_size"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if not (math.isfinite(args.lr) and args.lr >= 0):  # 0: frozen weights (a check that --init loads them)
        raise ValueError(f"--lr must be >= 0, got {args.lr}")
    check_image_size(args.image_size, multiple_of=32)
    check_fraction(args.ema_decay, "--ema-decay", closed=False)
    check_fraction(args.val_fraction, "--val-fraction", closed=False)
    for name in ("checkpoint_every", "eval_every", "workers"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if any(not (math.isfinite(m) and m > 0) for m in args.save_minutes):
        raise ValueError("--save-minutes takes positive minutes")
    check_out_folder(args.out)


def run(args: argparse.Namespace) -> int:
    if args.epochs is None and args.minutes is None and args.steps is None:
        args.epochs = DEFAULT_EPOCHS
    if args.model == "list":
        from .models_cmd import print_models

        print_models()
        return 0
    check_args(args)
    precision = check_precision(args.precision)
    config_cls = architecture(args.model or DEFAULT_ARCH)[0]
    overrides = parse_overrides(args.model_config, config_cls)
    init, start = args.init, ""
    if not args.resume:
        init, start = resolve_init(args.init, arch=args.model, switches=model_switches(args), overrides=overrides)
    cfg = TrainConfig(data=args.data, out=args.out, epochs=args.epochs, minutes=args.minutes, steps=args.steps,
                      batch_size=args.batch_size, image_size=args.image_size,
                      val_fraction=args.val_fraction or 0.0, val_split=args.val_split,
                      seed=args.seed, lr=args.lr, checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
                      save_minutes=list(args.save_minutes), workers=args.workers, init=init,
                      class_agnostic=args.class_agnostic,
                      ema_decay=args.ema_decay, precision=precision)
    trainer = Trainer(cfg, overrides, device=args.device, resume=args.resume, arch=args.model,
                      switches=model_switches(args), start=start if not args.resume else "")
    return trainer.run()
