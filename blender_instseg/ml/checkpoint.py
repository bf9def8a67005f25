"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain containers only.

No pickled classes, so a checkpoint from anywhere cannot run code on load, and the file stays
readable across refactors. The model config travels inside the checkpoint (and in config.json
beside it), so ``predict`` needs nothing but the .pt file.

Every failure to load is one ``CheckpointError`` line of our own words: torch's messages quote
file internals or advise loading the file with ``weights_only=False``, which must never reach a
user. A checkpoint carries a checksum of its tensors (``checksum``), written at save and verified
on load, and the zip's own CRCs are checked too, so a flipped bit is "corrupt checkpoint", never a
model that silently predicts garbage. Checkpoints written before the checksum existed still load.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..core.fileio import atomic_write_bytes

FORMAT = "blender_instseg.model/2"  # model_config names its architecture ("arch")
# Formats this code still reads: /1 is SOLOv2-lite from before the model zoo (its model_config has no "arch").
READABLE_FORMATS = (FORMAT, "blender_instseg.solov2-lite/1")
CHECKSUM_KEY = "checksum"  # "sha256:<hex>" over every tensor of the payload (``tensor_checksum``)


# predict's display threshold for checkpoints that carry no validated one (trained without a validation set)
FALLBACK_SCORE_THRESHOLD = 0.3


class CheckpointError(ValueError):
    """Not a checkpoint of this model (one-line message)."""


def _walk_tensors(obj: Any, h: "hashlib._Hash", path: str) -> None:
    """Feed every tensor under ``obj`` (with its key path, dtype and shape) to ``h`` in a fixed order."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"{path}|{obj.dtype}|{tuple(obj.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        if CHECKSUM_KEY in obj and not path:
            obj = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
        for key in sorted(obj, key=str):
            _walk_tensors(obj[key], h, f"{path}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _walk_tensors(value, h, f"{path}/{i}")


def tensor_checksum(payload: dict[str, Any]) -> str:
    """sha256 of the payload's tensors. Tensors only: plain values (history, thresholds) may be edited
    by hand and stay covered by the zip's CRCs."""
    h = hashlib.sha256()
    _walk_tensors(payload, h, "")
    return "sha256:" + h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Serialise to memory then write atomically: a kill mid-save never leaves a torn last.pt."""
    full = {"format": FORMAT, **{k: v for k, v in payload.items() if k != CHECKSUM_KEY}}
    full[CHECKSUM_KEY] = tensor_checksum(full)
    buf = io.BytesIO()
    torch.save(full, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _not_ours(p: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{p} is not a checkpoint of this project ({why})")


def _check_zip(p: Path) -> None:
    """torch.save writes a zip; its CRCs catch flipped bits torch itself never checks."""
    try:
        with zipfile.ZipFile(p) as zf:
            bad = zf.testzip()
    except zipfile.BadZipFile:
        raise _not_ours(p, "not a zip file as torch.save writes") from None
    except Exception:  # noqa: BLE001 - a mangled zip directory raises anything (struct, overflow, EOF)
        raise CheckpointError(f"corrupt checkpoint: {p} (its zip directory is damaged)") from None
    if bad is not None:
        raise CheckpointError(f"corrupt checkpoint: {p} (a zip CRC mismatch: damaged bytes)")


def _check_structure(p: Path, ckpt: Any) -> None:
    if not isinstance(ckpt, dict):
        raise _not_ours(p, f"holds a {type(ckpt).__name__}, not a dict")
    if ckpt.get("format") not in READABLE_FORMATS:
        found = ckpt.get("format")
        raise _not_ours(p, f"format {str(found)[:60]!r}, expected {FORMAT!r}")
    for key in ("model", "model_config", "categories"):
        if key not in ckpt:
            raise _not_ours(p, f"it lacks {key!r}")
    model = ckpt["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise _not_ours(p, "its 'model' is not a dict of tensors")
    if not isinstance(ckpt["model_config"], dict):
        raise _not_ours(p, "its 'model_config' is not a dict")
    cats = ckpt["categories"]
    try:
        ok = isinstance(cats, list) and bool(cats) and all(isinstance(c, dict) and int(c["id"]) >= 0 for c in cats)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise _not_ours(p, "its 'categories' is not a list of {id, name}")
    for key, kind in (("train_config", dict), ("history", list)):
        if key in ckpt and not isinstance(ckpt[key], kind):
            raise _not_ours(p, f"its {key!r} is not a {kind.__name__}")
    stored = ckpt.get(CHECKSUM_KEY)
    if stored is not None and stored != tensor_checksum(ckpt):
        raise CheckpointError(f"corrupt checkpoint: {p} (its tensors fail the checksum written at save)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        if (p / "last.pt").is_file():
            p = p / "last.pt"
        else:
            raise _not_ours(p, "a folder without last.pt")
    if not p.is_file():
        raise _not_ours(p, "not a regular file")
    _check_zip(p)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - fuzzed files raise IndexError, KeyError, RuntimeError, ...
        import pickle

        if isinstance(exc, pickle.UnpicklingError):  # weights_only refused it: a pickle of Python objects
            raise _not_ours(p, "it holds Python objects other than tensors; it was not loaded") from None
        raise _not_ours(p, "torch cannot read it") from None
    _check_structure(p, ckpt)
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the network from a checkpoint's config and load its weights; returns (model in eval mode, checkpoint)."""
    from .models import build_model

    ckpt = load_checkpoint(path, map_location=device)
    try:
        model = build_model(ckpt["model_config"])
        model.load_state_dict(ckpt["model"])
    except Exception as exc:  # noqa: BLE001 - a foreign config fails in any way while building
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint does not match the model code: {path} ({first})") from None
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
