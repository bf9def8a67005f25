"""A plain top-down feature pyramid over backbone strides 4..32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import conv_gn


class FPN(nn.Module):
    """Lateral 1x1 + nearest top-down sum + 3x3 smoothing; outputs P2..P5 with ``channels`` each.

    The finest level (P2, stride 4) is not smoothed: only the mask-feature branch reads it, and that
    branch starts with its own 3x3 conv, so a second one there would cost a quarter of the forward
    pass for nothing.
    """

    def __init__(self, in_channels: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(conv_gn(channels, channels) if i else nn.Identity() for i in range(len(in_channels)))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.smooth, lat)]
