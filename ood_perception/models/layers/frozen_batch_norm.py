"""detectron2's `FrozenBatchNorm2d`: batch norm with fixed statistics and affine terms."""

from __future__ import annotations

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """[B, C, H, W] -> (x - running_mean) / sqrt(running_var + eps) * weight + bias.

    The four tensors are buffers, as in detectron2, so a checkpoint of a frozen backbone
    loads strictly; eps is detectron2's 1e-5.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
