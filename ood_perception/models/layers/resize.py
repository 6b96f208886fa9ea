"""Antialiased bilinear resizing to a fixed size as two matrix products.

Exactly torch's `interpolate(mode="bilinear", antialias=True, align_corners=False)`, which is
separable: its weights per axis are read off by resizing an identity matrix. As matrix products
the resize exports to any ONNX runtime and to TensorRT, whose Resize has no antialiasing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _axis_weights(size_in: int, size_out: int) -> torch.Tensor:
    """[size_out, size_in]: row i holds the weights of output sample i."""
    identity = torch.eye(size_in, dtype=torch.float64)[None, None]
    return F.interpolate(identity, (size_out, size_in), mode="bilinear", align_corners=False,
                         antialias=True)[0, 0].float()


class AntialiasedResize(nn.Module):
    """[..., H, W] -> [..., h, w] for the sizes fixed at construction."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int]):
        super().__init__()
        self.register_buffer("rows", _axis_weights(size_in[0], size_out[0]), persistent=False)
        self.register_buffer("cols", _axis_weights(size_in[1], size_out[1]).t().contiguous(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols)
