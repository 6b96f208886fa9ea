"""ResNet as detectron2 builds it (`build_resnet_backbone`), under detectron2's names.

Keys: `stem.conv1.{weight,norm.*}`, `res{2..5}.{i}.{conv1,conv2,conv3,shortcut}.{weight,norm.*}`
with frozen batch norm. `stride_in_1x1` says where a stage's stride sits: in the first 1x1
convolution (MSRA's ImageNet weights, detectron2's default) or in the 3x3 one (torchvision's
weights, as the Mask2Former configs set it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.errors import ConfigurationError
from ood_perception.models.layers.frozen_batch_norm import FrozenBatchNorm2d

# Blocks per stage res2..res5 (MODEL.RESNETS.DEPTH).
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


@dataclass(frozen=True)
class ResNetConfig:
    """MODEL.RESNETS of a detectron2 config (bottleneck blocks, one group, no dilation)."""

    depth: int = 50
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    stride_in_1x1: bool = True

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of res2..res5."""
        return tuple(self.res2_out_channels * 2 ** i for i in range(4))


class ConvNorm(nn.Module):
    """detectron2's `Conv2d` with a norm: bias-free convolution, then `norm`."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.stride = stride
        self.padding = kernel // 2
        self.norm = FrozenBatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.conv2d(x, self.weight, None, self.stride, self.padding))


class BasicStem(nn.Module):
    """7x7 convolution with stride 2, ReLU, 3x3 max pool with stride 2: [B, 64, H/4, W/4]."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, 7, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 with a projection shortcut where the width or stride changes."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck: int, stride: int,
                 stride_in_1x1: bool):
        super().__init__()
        self.shortcut = (ConvNorm(in_channels, out_channels, 1, stride)
                         if in_channels != out_channels else None)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck, 1, stride_1x1)
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, stride_3x3)
        self.conv3 = ConvNorm(bottleneck, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv2(F.relu(self.conv1(x))))
        out = self.conv3(out)
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    """[B, 3, H, W] normalised -> [res2, res3, res4, res5] at strides 4, 8, 16, 32."""

    def __init__(self, cfg: ResNetConfig = ResNetConfig()):
        super().__init__()
        if cfg.depth not in DEPTHS:
            raise ConfigurationError(
                f"ResNet depth must be one of {sorted(DEPTHS)}, got {cfg.depth}")
        self.channels = cfg.channels
        self.stem = BasicStem(cfg.stem_out_channels)
        in_channels = cfg.stem_out_channels
        for index, blocks in enumerate(DEPTHS[cfg.depth]):
            out_channels = cfg.channels[index]
            stage = nn.Sequential(*(
                BottleneckBlock(in_channels if block == 0 else out_channels, out_channels,
                                out_channels // 4, 2 if block == 0 and index > 0 else 1,
                                cfg.stride_in_1x1)
                for block in range(blocks)))
            self.add_module(f"res{index + 2}", stage)
            in_channels = out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for index in range(4):
            x = getattr(self, f"res{index + 2}")(x)
            outs.append(x)
        return outs
