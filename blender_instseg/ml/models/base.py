"""What every architecture of the model zoo implements, so train/predict/evaluate/serve never name one.

A new architecture is one module under ``ml/models/`` with a config dataclass (subclass of
``ModelConfigBase``) and a model class (subclass of ``InstanceSegModel``), plus one line in the
registry (``ml/models/__init__.py``). The contract:

* ``forward(images, targets=None)``: images (B, 3, H, W) in [0, 1], H and W multiples of 32. With
  ``targets`` (one dict per image, see ``make_targets``) it returns a dict of scalar losses; the
  trainer sums them and logs each one as ``loss_<name>``. The loss is computed inside ``forward`` so
  DistributedDataParallel sees every parameter it touches. Without targets it returns raw outputs
  that only ``postprocess`` reads.
* ``postprocess(out, b, valid_hw, out_hw, refine=None)``: image ``b`` of the batch -> ``{"masks":
  (K, out_h, out_w) bool, "labels": (K,) long class index, "scores": (K,) float}`` sorted by
  descending score. ``valid_hw`` is the part of the padded input that holds the letterboxed image;
  masks are cropped to it and resized to ``out_hw`` (``crop_and_resize_logits`` does both;
  ``logits_to_masks`` also upsamples and thresholds, without full-resolution float maps).
* ``set_score_threshold(t)``: after it, ``postprocess`` returns the detections scoring >= t (and
  may skip work on the others). The default uses the config's ``score_thr`` (candidate threshold)
  and ``update_thr`` (final threshold); a model without them overrides the method.
* ``make_targets(cfg)`` (class method): a picklable callable run by the data set (so data-loader
  workers do it) on each augmented sample: ``{"masks": (N, H, W) uint8, "labels": (N,) int64,
  "boxes": (N, 4) float32 x1 y1 x2 y2, pixel edges, ["amodal_masks": (N, H, W) uint8]}`` -> extra
  numpy arrays added to the sample's target dict. ``None`` when the generic keys are enough.
* ``needs_amodal`` (class attribute): the data set also decodes ``amodal_segmentation``.
* ``crop_bank(cfg)`` (class method): (crops per sample, side); when non-zero the data set adds
  ``object_crops`` / ``object_crop_labels`` of random objects from the whole training set to each
  sample's targets (``layers/object_crops.py``), for a classifier that reads object crops.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TargetFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _as_lists(v: Any) -> Any:
    return [_as_lists(x) for x in v] if isinstance(v, (tuple, list)) else v


def _like(value: Any, example: Any) -> Any:
    """JSON lists -> the tuple shape of the field's default, leaves cast to the default's leaf type.

    Keeps a config read back from JSON (or from ``--model-config``) equal to the one written.
    """
    if isinstance(value, (list, tuple)):
        inner = example[0] if isinstance(example, tuple) and example else None
        return tuple(_like(v, inner) for v in value)
    if isinstance(example, bool) or example is None or isinstance(value, bool):
        return value
    if isinstance(example, float) and isinstance(value, int):
        return float(value)
    if isinstance(example, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class ModelConfigBase:
    """Base of every architecture's config: ``num_classes``, the shared backbone + FPN, JSON round-tripping.

    ``arch`` (the registry name) is a class attribute, written into ``to_dict()`` so a checkpoint
    names its architecture; dicts without it are SOLOv2 (checkpoints from before the zoo).
    """

    arch: ClassVar[str] = ""
    #: Boolean settings ``train --NAME`` / ``--no-NAME`` choose for a new run (the flags are declared
    #: torch-free in ``cli_args.MODEL_SWITCHES``; train refuses one for an architecture that does not
    #: list it). Not settable by ``--model-config``.
    train_switches: ClassVar[tuple[str, ...]] = ()
    num_classes: int
    # the backbone (backbone.py) and FPN (fpn.py) every architecture builds on
    backbone_widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    backbone_blocks: tuple[int, ...] = (0, 1, 1, 1, 1)
    fpn_channels: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **{k: _as_lists(v) for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        kw = dict(d)
        arch = kw.pop("arch", cls.arch)
        if arch != cls.arch:
            raise ValueError(f"model config is for {arch!r}, not {cls.arch!r}")
        known = {f.name: f for f in fields(cls)}
        unknown = set(kw) - set(known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**{k: cls.coerce(k, v) for k, v in kw.items()})

    @classmethod
    def coerce(cls, key: str, value: Any) -> Any:
        """``value`` shaped like the field's default (lists -> tuples, int -> float where the default is float)."""
        f = {f.name: f for f in fields(cls)}[key]
        default = f.default if f.default is not MISSING else None
        return _like(value, default)

    @classmethod
    def settable(cls) -> list[str]:
        """Fields ``--model-config`` may set (not the ones the data set decides)."""
        return [f.name for f in fields(cls) if f.name not in cls.fixed_fields()]

    @classmethod
    def fixed_fields(cls) -> tuple[str, ...]:
        """The data set's class count and the train switches."""
        return ("num_classes", *cls.train_switches)


class InstanceSegModel(nn.Module, ABC):
    """Base class of the zoo's networks (see the module docstring for the contract)."""

    summary: ClassVar[str] = ""
    needs_amodal: ClassVar[bool] = False

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        if cfg.num_classes < 1:
            raise ValueError("the model needs at least one category")
        self.cfg = cfg

    @abstractmethod
    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
        """Loss dict with ``targets``, raw outputs for ``postprocess`` without."""

    @abstractmethod
    def postprocess(self, out: dict[str, Any], b: int, valid_hw: tuple[int, int], out_hw: tuple[int, int],
                    refine: bool | None = None) -> dict[str, torch.Tensor]:
        """Masks (K, out_h, out_w) bool, labels (K,), scores (K,) for image ``b`` of the batch."""

    @classmethod
    def make_targets(cls, cfg: Any) -> TargetFn | None:
        """Model-specific training targets computed in the data set; None: the generic ones suffice."""
        return None

    @classmethod
    def crop_bank(cls, cfg: Any) -> tuple[int, int]:
        """(crops per sample, crop side): the data set adds ``object_crops`` (N, 4, side, side) image +
        stride-4 mask crops of random objects from the whole training set, and their
        ``object_crop_labels`` (N,), to each sample's targets (``layers.object_crops``). (0, 0): none."""
        return 0, 0

    def set_score_threshold(self, threshold: float) -> None:
        """Return exactly the detections scoring >= ``threshold`` from now on.

        The candidate threshold is lowered to it when it is below the model's own, and the final
        threshold is set to it, so masks that would be dropped anyway are never refined or
        upsampled. Always computed from the config's values at the first call, so calling it
        again (one per served request) does not ratchet the candidate threshold down.
        """
        base = self.__dict__.get("_threshold_base")
        if base is None:
            base = self.__dict__["_threshold_base"] = (float(self.cfg.score_thr), float(self.cfg.update_thr))
        self.cfg.score_thr = min(base[0], threshold)
        self.cfg.update_thr = threshold


def empty_prediction(out_hw: tuple[int, int], device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """What ``postprocess`` returns for an image without detections."""
    return {"masks": torch.zeros((0, *out_hw), dtype=torch.bool, device=device),
            "labels": torch.zeros(0, dtype=torch.long, device=device), "scores": torch.zeros(0, device=device)}


def crop_and_resize_logits(full: torch.Tensor, valid_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """(K, H, W) mask logits at input resolution -> (K, out_h, out_w): cut the letterbox padding, resize bilinearly."""
    vh, vw = valid_hw
    full = full[:, :vh, :vw]
    if (vh, vw) != tuple(out_hw):
        full = F.interpolate(full[:, None], size=tuple(out_hw), mode="bilinear", align_corners=False)[:, 0]
    return full


def _axis_weights(n: int, factor: int, valid: int, out: int, device: torch.device) -> torch.Tensor:
    """(out, n) weights of one axis of ``logits_to_masks``: row r holds how much each of the ``n``
    coarse samples contributes to output sample r after x ``factor`` bilinear upsampling, the cut to
    ``valid`` and the bilinear resize to ``out``. Built by sending the identity through those very
    ``F.interpolate`` calls, so the weights (edge clamping included) are torch's own."""
    x = torch.eye(n, device=device)[:, None, :, None]  # n unit signals along the height axis
    if factor != 1:
        x = F.interpolate(x, scale_factor=(float(factor), 1.0), mode="bilinear", align_corners=False)
    x = x[:, :, :valid]
    if valid != out:
        x = F.interpolate(x, size=(out, 1), mode="bilinear", align_corners=False)
    return x[:, 0, :, 0].T.contiguous()


@functools.lru_cache(maxsize=32)
def _axis(n: int, factor: int, valid: int, out: int, device: torch.device
          ) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """``_axis_weights`` and what ``logits_to_masks`` reads of them: (n, out) 0/1 floats, which output
    samples each coarse sample touches, and each output sample's first and last coarse sample.
    Cached: a folder of same-sized images, or a served model, meets the same few geometries (never
    written to by the callers)."""
    weights = _axis_weights(n, factor, valid, out, device)
    touch = weights != 0
    first, last = _true_spans(touch)
    return weights, touch.T.to(weights.dtype).contiguous(), first, last


def logits_to_masks(logits: torch.Tensor, factor: int, valid_hw: tuple[int, int], out_hw: tuple[int, int]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, h, w) mask logits at stride ``factor`` of the padded input -> ((K, out_h, out_w) bool masks,
    (K,) bool: the mask is not empty). The masks are what
    ``crop_and_resize_logits(F.interpolate(logits, scale_factor=factor), valid_hw, out_hw) > 0``
    gives, without building the K full-resolution float maps.

    Why it is the same: each step is bilinear, so every output value is a weighted sum, with
    non-negative weights, of the coarse values (one (out, n) weight matrix per axis, the two steps
    composed). An output pixel none of whose non-zero weights touches a positive coarse value is
    <= 0 in both computations, so only the window of output rows and columns that touch a mask's
    positive coarse pixels is computed, as two small matrix products. Inside that window the sums
    are grouped differently, so a value may differ from the sequential one in the last float bits:
    only a pixel whose logit is within about 1e-6 of 0 can change (tests/ml/test_postprocess.py
    compares the two on real models).
    """
    k, h, w = logits.shape
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    masks = torch.zeros((k, out_h, out_w), dtype=torch.bool, device=logits.device)
    nonempty = torch.zeros(k, dtype=torch.bool, device=logits.device)
    if k == 0:
        return masks, nonempty
    # (out_h, h) weights; which output rows each coarse row touches; coarse rows each output row reads
    ay, ay_touch, ay_first, ay_last = _axis(h, factor, int(valid_hw[0]), out_h, logits.device)
    ax, ax_touch, ax_first, ax_last = _axis(w, factor, int(valid_hw[1]), out_w, logits.device)
    # output rows (columns) touched by each mask's positive coarse rows (columns); a float max is many
    # times faster than a bool any on a CPU
    rows = ((logits.amax(2) > 0).to(ay.dtype) @ ay_touch) > 0  # (K, out_h)
    cols = ((logits.amax(1) > 0).to(ax.dtype) @ ax_touch) > 0  # (K, out_w)
    row_span, col_span = _true_spans(rows), _true_spans(cols)
    for i, ((r0, r1), (c0, c1)) in enumerate(zip(zip(*row_span), zip(*col_span))):
        if r1 < 0 or c1 < 0:  # no positive coarse pixel: an empty mask
            continue
        i0, i1 = min(ay_first[r0:r1 + 1]), max(ay_last[r0:r1 + 1]) + 1
        j0, j1 = min(ax_first[c0:c1 + 1]), max(ax_last[c0:c1 + 1]) + 1
        window = ay[r0:r1 + 1, i0:i1] @ logits[i, i0:i1, j0:j1] @ ax[c0:c1 + 1, j0:j1].T
        masks[i, r0:r1 + 1, c0:c1 + 1] = window > 0
        nonempty[i] = window.amax() > 0
    return masks, nonempty


def _true_spans(flags: torch.Tensor) -> tuple[list[int], list[int]]:
    """(K, n) bool -> per row the first and last index of a True value ([n, -1] for a row without one)."""
    n = flags.shape[1]
    idx = torch.arange(n, device=flags.device)
    first = torch.where(flags, idx, n).amin(1)
    last = torch.where(flags, idx, -1).amax(1)
    return first.tolist(), last.tolist()
