"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain containers only.

No pickled classes, so a checkpoint from anywhere cannot run code on load, and the file stays
readable across refactors. The model config travels inside the checkpoint (and in config.json
beside it), so ``predict`` needs nothing but the .pt file.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..core.fileio import atomic_write_bytes

FORMAT = "blender_instseg.model/2"  # model_config names its architecture ("arch")
# Formats this code still reads: /1 is SOLOv2-lite from before the model zoo (its model_config has no "arch").
READABLE_FORMATS = (FORMAT, "blender_instseg.solov2-lite/1")


# predict's display threshold for checkpoints that carry no validated one (trained without a validation set)
FALLBACK_SCORE_THRESHOLD = 0.3


class CheckpointError(ValueError):
    """Not a checkpoint of this model (one-line message)."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Serialise to memory then write atomically: a kill mid-save never leaves a torn last.pt."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        if (p / "last.pt").is_file():
            p = p / "last.pt"
        else:
            raise CheckpointError(f"checkpoint is a folder without last.pt: {p}")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, AttributeError,
            struct.error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"not a readable checkpoint: {p} ({first[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in READABLE_FORMATS:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"not a blender_instseg model checkpoint: {p} (format {found!r}, expected {FORMAT!r})")
    for key in ("model", "model_config", "categories"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint lacks {key!r}: {p}")
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the network from a checkpoint's config and load its weights; returns (model in eval mode, checkpoint)."""
    from .models import build_model

    ckpt = load_checkpoint(path, map_location=device)
    try:
        model = build_model(ckpt["model_config"])
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint does not match the model code: {str(exc).splitlines()[0][:160]}") from None
    return model.to(device).eval(), ckpt


def categories_match(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Same ids with the same names, in id order: the model's class index -> category id map is fixed."""
    key = lambda cats: [(int(c["id"]), str(c.get("name", ""))) for c in sorted(cats, key=lambda c: int(c["id"]))]  # noqa: E731
    return key(a) == key(b)


def score_threshold_of(ckpt: dict[str, Any]) -> tuple[float, str]:
    """(threshold, where it comes from) for predict when none is given: the best-F1 score threshold
    measured on the validation set at the checkpoint's latest evaluation, else FALLBACK_SCORE_THRESHOLD.
    Score scales differ between models and between scoring rules, so a fixed 0.3 can hide most objects."""
    for record in reversed(ckpt.get("history") or []):
        value = record.get("score_threshold_f1") if isinstance(record, dict) else None
        if isinstance(value, (int, float)) and 0.0 < float(value) <= 1.0:
            return float(value), f"best F1 on the validation set at step {record.get('step')}"
    return FALLBACK_SCORE_THRESHOLD, "default (the checkpoint has no validated threshold)"
