"""A small residual conv backbone trained from scratch.

No pretrained weights exist for it (no torchvision, no downloads), so GroupNorm replaces BatchNorm:
batches on 2 CPU cores are 2-8 images, far too small for batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_gn(cin: int, cout: int, k: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    """conv -> GroupNorm -> ReLU; groups chosen so every group has >= 4 channels."""
    groups = max(1, min(32, cout // 4))
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.GroupNorm(groups, cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut: enough depth per stage without losing gradient flow."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_gn(channels, channels), conv_gn(channels, channels, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class Backbone(nn.Module):
    """Returns features at strides 2, 4, 8, 16, 32 (C1..C5).

    The stride-2 map is kept because the point head samples it for fine boundary detail.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96, 128), blocks: tuple[int, ...] = (0, 1, 1, 1, 1)) -> None:
        super().__init__()
        if len(widths) != 5 or len(blocks) != 5:
            raise ValueError("backbone needs 5 widths and 5 block counts (strides 2..32)")
        stages = []
        cin = 3
        for width, n in zip(widths, blocks):
            stages.append(nn.Sequential(conv_gn(cin, width, stride=2), *[ResBlock(width) for _ in range(n)]))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats
