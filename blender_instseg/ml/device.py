"""Device choice and CPU thread settings, shared by train and predict."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def set_threads() -> int:
    """Use every core we are allowed (affinity, not the machine count), or OMP_NUM_THREADS if set.

    torch's default can oversubscribe a 2-core box when inter-op pools also spin; one pool of
    n intra-op threads is the fastest setting measured for this small net.
    """
    env = os.environ.get("OMP_NUM_THREADS")
    try:
        n = int(env) if env else len(os.sched_getaffinity(0))
    except (ValueError, AttributeError):
        n = os.cpu_count() or 1
    n = max(1, n)
    torch.set_num_threads(n)
    return n


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; asking for cuda without one is an error, not a silent fallback."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA GPU")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    dev = torch.device(name)
    if dev.type == "cpu":
        set_threads()
    return dev


PRECISIONS = ("fp32", "bf16")


def check_precision(name: str) -> str:
    """A training precision's canonical name; unknown names are an error (a resumed run's saved one too)."""
    name = (name or "fp32").lower()
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; use {' or '.join(PRECISIONS)}")
    return name


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The training forward's mixed-precision context: bf16 autocast (convolutions and matmuls in
    bfloat16; weights, gradients, losses and the optimizer in fp32; no loss scaling, unlike fp16),
    or a disabled context for fp32. Opt-in: on a CPU it speeds up the convolutions but not a whole
    training step, so fp32 stays the default; it is meant for GPUs with bf16 units."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
