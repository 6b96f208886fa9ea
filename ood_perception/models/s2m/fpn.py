"""detectron2's FPN on its ResNet (`build_resnet_fpn_backbone`), under detectron2's names.

`bottom_up.*` is the ResNet; `fpn_lateral{2..5}` (1x1) and `fpn_output{2..5}` (3x3) convolutions
with biases build p2..p5 top-down (nearest 2x upsampling, sum); p6 is p5 max-pooled with
kernel 1 and stride 2 (`LastLevelMaxPool`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.backbones.resnet import ResNet, ResNetConfig

# Feature strides of p2..p6.
STRIDES = (4, 8, 16, 32, 64)


class FPN(nn.Module):
    """Normalised, padded [B, 3, H, W] (H, W multiples of 32) -> [p2, p3, p4, p5, p6]."""

    def __init__(self, resnet: ResNetConfig, out_channels: int = 256):
        super().__init__()
        self.bottom_up = ResNet(resnet)
        for stage, channels in zip(range(2, 6), resnet.channels, strict=True):
            self.add_module(f"fpn_lateral{stage}", nn.Conv2d(channels, out_channels, 1))
            self.add_module(f"fpn_output{stage}",
                            nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        res = self.bottom_up(x)
        prev = self.fpn_lateral5(res[3])
        results = [self.fpn_output5(prev)]
        for stage in (4, 3, 2):
            top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = getattr(self, f"fpn_lateral{stage}")(res[stage - 2]) + top_down
            results.insert(0, getattr(self, f"fpn_output{stage}")(prev))
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return results
