"""Network modules of the bundled model (torch only). Built from a plain-dict config by ``build_model``."""

from .solov2 import ModelConfig, SOLOv2Lite, build_model

__all__ = ["ModelConfig", "SOLOv2Lite", "build_model"]
