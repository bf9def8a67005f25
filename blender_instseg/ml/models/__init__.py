"""The model zoo (torch only): registry name -> (config dataclass, model class).

A new architecture is one module implementing ``base.InstanceSegModel`` plus one line in
``ARCHITECTURES``. ``train --model NAME`` picks one; the name is written into the checkpoint's
``model_config`` (``arch``), so predict/evaluate/serve rebuild whatever network a checkpoint holds.
Configs without ``arch`` (checkpoints from before the zoo) are SOLOv2.
"""

from __future__ import annotations

from typing import Any

from .base import InstanceSegModel, ModelConfigBase
from .bcnet import BCNet, BCNetConfig
from .implicit_pointrend import ImplicitPointRend, ImplicitPointRendConfig
from .maskrcnn import MaskRCNN, MaskRCNNConfig
from .polarmask import PolarMask, PolarMaskConfig
from .solov2 import Solov2Config, SOLOv2Lite
from .yolact import Yolact, YolactConfig

DEFAULT_ARCH = "solov2"

ARCHITECTURES: dict[str, tuple[type[ModelConfigBase], type[InstanceSegModel]]] = {
    cfg.arch: (cfg, model) for cfg, model in (
        (Solov2Config, SOLOv2Lite),
        (YolactConfig, Yolact),
        (MaskRCNNConfig, MaskRCNN),
        (PolarMaskConfig, PolarMask),
        (BCNetConfig, BCNet),
        (ImplicitPointRendConfig, ImplicitPointRend),
    )
}


def architecture(name: str) -> tuple[type[ModelConfigBase], type[InstanceSegModel]]:
    """(config class, model class) of a registered name; a one-line error naming the choices otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        hint = "; settings go in --model-config K=V,..." if "=" in str(name) else ""
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}{hint}") from None


def describe() -> list[tuple[str, str]]:
    """(name, one-line summary) of every registered architecture, in registry order."""
    return [(name, model.summary) for name, (_, model) in ARCHITECTURES.items()]


def config_from_dict(d: dict[str, Any]) -> Any:
    """A checkpoint's ``model_config`` -> the config object of its architecture (no ``arch``: solov2)."""
    cfg_cls, _ = architecture(str(d.get("arch", DEFAULT_ARCH)))
    return cfg_cls.from_dict(d)


def build_model(cfg: ModelConfigBase | dict[str, Any]) -> InstanceSegModel:
    """The network for a config object or a plain-dict config (as stored in checkpoints)."""
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    _, model_cls = architecture(cfg.arch)
    return model_cls(cfg)


__all__ = ["ARCHITECTURES", "DEFAULT_ARCH", "InstanceSegModel", "Solov2Config", "ModelConfigBase", "SOLOv2Lite",
           "Yolact", "YolactConfig",
           "architecture", "build_model", "config_from_dict", "describe"]
