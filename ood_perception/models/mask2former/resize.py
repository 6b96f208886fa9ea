"""detectron2's test-time resize, inside the graph and bit-exact.

The official Mask2Former test path (detectron2 `DatasetMapper` with `ResizeShortestEdge`,
INPUT.MIN_SIZE_TEST 1024 and MAX_SIZE_TEST 2048 in the Cityscapes configs) resizes the uint8
RGB image with PIL's bilinear filter before the network. PIL resizes in two passes (width,
then height), each with a triangle filter stretched by the downscale factor (antialiasing),
fixed-point weights of 22 fractional bits and a uint8 result rounded half up; the network
sees those uint8 values. `PILBilinearResize` reproduces that arithmetic in int32 (gathers,
products and sums only), so an exported graph gives exactly PIL's pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ood_perception.errors import ConfigurationError

# Pillow's fixed point for 8-bit images: 32 - 8 - 2 fractional bits.
PRECISION_BITS = 22


@dataclass(frozen=True)
class ShortestEdgeResize:
    """`ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)` of the official test path."""

    short_edge: int = 1024
    max_size: int = 2048

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """detectron2 `ResizeShortestEdge.get_output_shape`: short side to `short_edge`, long
        side at most `max_size`, each side rounded half up."""
        scale = self.short_edge / min(height, width)
        new_h, new_w = (self.short_edge, scale * width) if height < width else (
            scale * height, self.short_edge)
        if max(new_h, new_w) > self.max_size:
            scale = self.max_size / max(new_h, new_w)
            new_h, new_w = new_h * scale, new_w * scale
        return int(new_h + 0.5), int(new_w + 0.5)

    def to_metadata(self, input_size: tuple[int, int], outputs: str) -> dict:
        """What the graph's `tiling` metadata records about the resize."""
        return {"short_edge": self.short_edge, "max_size": self.max_size,
                "interpolation": "PIL bilinear on uint8",
                "network_size": list(self.output_size(*input_size)), "resize_back": outputs}


def pil_bilinear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's bilinear coefficients along one axis: source indices int64 [out, K] and
    fixed-point weights int32 [out, K] (taps past a row's support have weight 0)."""
    if in_size <= 0 or out_size <= 0:
        raise ConfigurationError(f"resize sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = filter_scale  # the triangle filter's support is 1
    inverse = 1.0 / filter_scale
    taps = math.ceil(support) * 2 + 1
    index = torch.zeros(out_size, taps, dtype=torch.int64)
    weight = torch.zeros(out_size, taps, dtype=torch.int32)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - first
        raw = [max(0.0, 1.0 - abs((tap + first - center + 0.5) * inverse))
               for tap in range(count)]
        total = sum(raw)
        for tap, value in enumerate(raw):
            index[out, tap] = first + tap
            weight[out, tap] = int(0.5 + value / total * (1 << PRECISION_BITS))
    return index, weight


class PILBilinearResize(nn.Module):
    """float [B, C, H, W] holding uint8 values -> the same at [B, C, h, w], as PIL resizes.

    Each pass: sum_k pixel[index_k] * weight_k + 2^21, shifted right by 22 bits; all terms are
    non-negative and the weights sum to 2^22, so the result is already in 0..255.
    """

    def __init__(self, input_size: tuple[int, int], output_size: tuple[int, int]):
        super().__init__()
        self.input_size = tuple(input_size)
        self.output_size = tuple(output_size)
        for axis, (size_in, size_out) in zip("hw", zip(input_size, output_size, strict=True),
                                             strict=True):
            index, weight = pil_bilinear_taps(size_in, size_out)
            self.register_buffer(f"{axis}_index", index, persistent=False)
            self.register_buffer(f"{axis}_weight", weight, persistent=False)

    @staticmethod
    def _pass(x: torch.Tensor, dim: int, index: torch.Tensor,
              weight: torch.Tensor) -> torch.Tensor:
        """One PIL pass along `dim` (2 = height, 3 = width) of an int32 image."""
        shape = [1, 1, 1, 1]
        shape[dim] = -1
        total = torch.full((), 1 << (PRECISION_BITS - 1), dtype=torch.int32)
        for tap in range(index.shape[1]):
            total = total + x.index_select(dim, index[:, tap]) * weight[:, tap].view(shape)
        return total // (1 << PRECISION_BITS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.to(torch.int32)
        if self.output_size[1] != self.input_size[1]:
            out = self._pass(out, 3, self.w_index, self.w_weight)
        if self.output_size[0] != self.input_size[0]:
            out = self._pass(out, 2, self.h_index, self.h_weight)
        return out.to(x.dtype)
