"""SETR's naive up-sampling head (mmsegmentation `SETRUPHead`) under its parameter names.

`decode_head.norm` (LayerNorm over the tokens), `up_convs.i.0.{conv, bn}` (ConvModule:
bias-free conv, batch norm, ReLU) each followed by a bilinear x`up_scale` resize, then
`conv_seg`. The released DOoD SETR models use one 1x1 conv and x4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Module):
    """mmcv's ConvModule with a norm: `conv` (no bias) -> `bn` -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Upsample(nn.Module):
    """mmseg's `Upsample`: bilinear to int(side * scale), align_corners=False."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2] * self.scale), int(x.shape[-1] * self.scale))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SETRUpHead(nn.Module):
    """Patch tokens [B, h*w, C] -> logits [B, K, h * up^n, w * up^n]."""

    def __init__(self, in_channels: int = 1024, channels: int = 256, num_classes: int = 19,
                 num_convs: int = 1, up_scale: int = 4, kernel_size: int = 1):
        super().__init__()
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        widths = [in_channels] + [channels] * num_convs
        self.up_convs = nn.ModuleList(
            nn.Sequential(ConvModule(a, b, kernel_size), Upsample(up_scale))
            for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.norm(tokens)
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)
        for up_conv in self.up_convs:
            x = up_conv(x)
        return self.conv_seg(x)
