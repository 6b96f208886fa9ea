"""Channel-wise LayerNorm of [B, C, H, W] maps (`LayerNorm2d` of segment-anything, MobileSAM)."""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    """Normalise each pixel over its C channels, then scale and shift (eps 1e-6 as upstream)."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
