"""The bundled pretrained weights: where they are, how a new run starts from them, how they are made.

``BUNDLED`` is a class-agnostic SOLOv2-lite ("object") trained by ``benchmarks/pretrain_weights.py``
on generated scenes of many random shapes in randomised looks. A new ``train`` run starts from it
unless told otherwise (``--init none``): the backbone, FPN and mask branches are kept, the category
head is re-initialised for the dataset's categories, each category's grid scores starting from the
"object" scores (so detections score high from the first step). ``predict`` with it finds objects of any kind
(category "object") before anything is trained, which Predict View uses.

The file is a normal checkpoint (same format tag, ``weights_only`` loading, tensor checksum) that
holds only the averaged weights, stored as float16: half the bytes, and the rounding is far below
what a fine-tune changes. ``load_state_dict`` copies them into float32 parameters.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, categories_match, load_checkpoint, save_checkpoint
from .models import DEFAULT_ARCH, build_model, config_from_dict
from .weights import BUNDLED

log = logging.getLogger(__name__)

#: --init values that are not paths
INIT_BUNDLED, INIT_NONE = "bundled", "none"


def bundled_path() -> Path:
    return BUNDLED


def export_weights(src: str | Path, dst: str | Path, recipe: dict[str, Any]) -> Path:
    """Write ``src``'s averaged weights (float16), config, categories and last evaluation to ``dst``.

    ``recipe``: how the weights were made (command, data seeds), kept in the file for the record.
    """
    ckpt = load_checkpoint(src)
    model = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    payload = {"model": model, "model_config": ckpt["model_config"], "categories": ckpt["categories"],
               "history": list(ckpt.get("history", []))[-1:], "recipe": recipe,
               "train_config": dict(ckpt.get("train_config", {}))}
    return save_checkpoint(dst, payload)


def resolve_init(init: str | None, *, arch: str | None, switches: dict[str, bool],
                 overrides: dict[str, Any] | None) -> tuple[str | None, str]:
    """--init of a new run -> (checkpoint path or None for random weights, why, for the log).

    Not given: the bundled weights when the run's network is theirs (the default architecture with
    its default settings), else random weights. ``bundled`` asks for them outright: a network that
    differs is an error, as for any --init checkpoint.
    """
    if init is not None and init.lower() == INIT_NONE:
        return None, "random weights (--init none)"
    if init is not None and init.lower() != INIT_BUNDLED:
        return init, f"the weights of {init}"
    explicit = init is not None
    path = bundled_path()
    if not path.is_file():
        raise CheckpointError(f"bundled weights missing: {path} (reinstall, or pass --init none to train from "
                              "random weights)")
    if not explicit:
        differs = _differs_from_bundled(arch, switches, overrides)
        if differs:
            return None, f"random weights (the bundled weights are for the default {DEFAULT_ARCH}; {differs})"
    return str(path), f"the bundled pretrained weights ({path.name})"


def _differs_from_bundled(arch: str | None, switches: dict[str, bool], overrides: dict[str, Any] | None) -> str:
    if arch not in (None, DEFAULT_ARCH):
        return f"this run is --model {arch}"
    if overrides:
        return "this run sets --model-config"
    cfg = config_from_dict(load_checkpoint(bundled_path())["model_config"])
    for name, value in switches.items():
        if getattr(cfg, name, value) != value:
            return f"this run sets --{'' if value else 'no-'}{name.replace('_', '-')}"
    return ""


def category_head_keys(model_config: dict[str, Any]) -> set[str]:
    """Parameter names whose shape follows the class count: the layers a new category list replaces.

    Found by building the network for two class counts and comparing shapes, so every architecture
    (and a second-look classifier) is covered without a list kept by hand.
    """
    shapes = []
    for n in (2, 3):
        sd = build_model({**model_config, "num_classes": n}).state_dict()
        shapes.append({k: tuple(v.shape) for k, v in sd.items()})
    return {k for k in shapes[0] if shapes[0][k] != shapes[1].get(k)}


def load_init_weights(model: torch.nn.Module, init: dict[str, Any], categories: list[dict[str, Any]],
                      source: str) -> None:
    """Load --init weights into ``model`` (built for ``categories``); a different category list keeps
    the new model's freshly initialised category head and says so in the log."""
    state = dict(init["model"])
    if not categories_match(init["categories"], categories):
        head = category_head_keys(init["model_config"])
        fresh = model.state_dict()
        agnostic = len(init["categories"]) == 1
        for key in head:
            if key not in fresh:
                continue
            old, new = state[key], fresh[key]
            if agnostic and not key.startswith("mask_cls.") and old.shape[0] == 1 and old.shape[1:] == new.shape[1:]:
                # A class-agnostic init's one grid-score row is its objectness: every new category starts
                # from it, so objects score high from the first step and training only has to tell the
                # categories apart (a random head starts every score at the focal prior, about 0.01). The
                # second-look classifier's softmax over one class learnt nothing: it starts fresh.
                state[key] = old.to(new.dtype).expand_as(new).clone()
            else:
                state[key] = new
        names = ", ".join(str(c.get("name", c["id"])) for c in init["categories"][:6])
        how = f"each from the one class of {source}" if agnostic else f"randomly; {source} was"
        log.info("the category head is re-initialised for this dataset's %d categories (%s trained on: %s); "
                 "every other layer starts from its weights", len(categories), how, names)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"--init checkpoint does not match the model code: {str(exc).splitlines()[0][:160]}") from None
