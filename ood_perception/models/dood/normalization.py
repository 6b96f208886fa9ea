"""DOoD's feature normalisation: in-distribution features mapped to about [-1, 1].

The official `FeatureNormalization` (lmb-freiburg/diffusion-for-ood `diffusion_model.py`)
keeps queues of per-batch statistics for training; inference uses only `shift` =
(min + max) / 2 per channel and `scale` = the largest (max - min) / 2 over the channels,
stored once per channel.
"""

from __future__ import annotations

import torch
from torch import nn


def shift_and_scale(minimum: torch.Tensor, maximum: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel min and max [C] -> (shift [C], scale [C], one value repeated)."""
    shift = (minimum + maximum) / 2
    scale = ((maximum - minimum) / 2).amax(dim=-1, keepdim=True).expand_as(shift)
    return shift, scale.clone()


class FeatureNormalization(nn.Module):
    """Features [..., C] -> (x - shift) / scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale
