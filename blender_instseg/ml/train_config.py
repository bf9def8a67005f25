"""Training settings (``TrainConfig``, ``AugmentConfig``): the one place train's defaults are written.

Torch-free, so ``cli_args`` reads its defaults from here and ``--help`` works without torch.
A ``TrainConfig`` is saved in every checkpoint and in RUN_DIR/config.json; --resume reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: passes over the training images when none of --epochs, --minutes and --steps is given
DEFAULT_EPOCHS = 20.0


@dataclass
class AugmentConfig:
    """Training-time augmentation of each image and its masks (``InstanceDataset``)."""

    scale_min: float = 0.7
    scale_max: float = 1.3
    hflip: float = 0.5
    vflip: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    min_area: int = 6


@dataclass
class TrainConfig:
    """Training settings; saved in every checkpoint and in RUN_DIR/config.json."""

    data: str
    out: str
    epochs: float | None = None
    minutes: float | None = None
    steps: int | None = None
    batch_size: int = 4
    image_size: int = 256
    val_fraction: float = 0.0
    val_split: str | None = None
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    # evaluate, predict and every checkpoint's "model" use the moving average of the weights (ml/ema.py);
    # 0: the live weights. On by default: the same AP at the end of a schedule, higher in a run stopped
    # before its end. Runs saved without it resume without it.
    ema_decay: float = 0.99
    precision: str = "fp32"  # or "bf16": autocast of the training forward (device.autocast)
    grad_clip: float = 10.0
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    eval_every: int = 0
    save_minutes: list[float] = field(default_factory=list)
    workers: int = 0
    init: str | None = None  # start from this checkpoint's weights (fine-tuning; fresh optimizer and step 0)
    class_agnostic: bool = False  # every category folded into one, "object" (data.class_agnostic)
    augment: dict[str, Any] = field(default_factory=lambda: asdict(AugmentConfig()))
