"""Multi-scale deformable attention (Deformable DETR) written with `F.grid_sample`.

No compiled operator, so the pixel decoder exports to ONNX (GridSample) and TensorRT. The
sampling follows the official `ms_deform_attn_core_pytorch`: bilinear, zeros outside the map,
`align_corners=False` (location x in [0, 1] is pixel coordinate x * W - 0.5).
Parameter names match detectron2's Mask2Former `MSDeformAttn`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_sample(value: torch.Tensor, spatial_shapes: tuple[tuple[int, int], ...],
                          locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted bilinear samples of every level.

    value [N, S, M, D] (S = sum of H_l * W_l, levels flattened row-major in order),
    locations [N, Lq, M, L, P, 2] as (x, y) in [0, 1], weights [N, Lq, M, L, P]
    -> [N, Lq, M * D]. `spatial_shapes` are static Python ints.
    """
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    grids = 2.0 * locations - 1.0
    sampled = []
    start = 0
    for level, (height, width) in enumerate(spatial_shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        level_value = value[:, start:start + height * width].permute(0, 2, 3, 1)
        level_value = level_value.reshape(-1, dim, height, width)
        start += height * width
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid = grids[:, :, :, level].transpose(1, 2).reshape(-1, queries, points, 2)
        sampled.append(F.grid_sample(level_value, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))
    # [N*M, D, Lq, L, P] * [N*M, 1, Lq, L, P], summed over levels and points.
    stacked = torch.stack(sampled, dim=3)
    weights = weights.transpose(1, 2).reshape(-1, 1, queries, levels, points)
    out = (stacked * weights).sum(dim=(3, 4))
    return out.reshape(batch, heads * dim, queries).transpose(1, 2)


class MSDeformAttn(nn.Module):
    """Deformable attention over `levels` feature maps with `points` samples per head and level."""

    def __init__(self, d_model: int = 256, levels: int = 3, heads: int = 8, points: int = 4):
        super().__init__()
        self.d_model, self.levels, self.heads, self.points = d_model, levels, heads, points
        self.sampling_offsets = nn.Linear(d_model, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d_model, heads * levels * points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor,
                values: torch.Tensor, spatial_shapes: tuple[tuple[int, int], ...]
                ) -> torch.Tensor:
        """query [N, Lq, C], reference_points [N or 1, Lq, L, 2] in [0, 1], values [N, S, C]."""
        batch, queries, _ = query.shape
        value = self.value_proj(values).reshape(batch, -1, self.heads, self.d_model // self.heads)
        offsets = self.sampling_offsets(query).reshape(
            batch, queries, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).reshape(
            batch, queries, self.heads, self.levels * self.points).softmax(-1)
        weights = weights.reshape(batch, queries, self.heads, self.levels, self.points)
        # Offsets are in pixels of each level: divide by (W_l, H_l). Filled on the device (no
        # host copy), so a CUDA graph can capture it.
        sizes = [offsets.new_full((), float(size)) for h, w in spatial_shapes for size in (w, h)]
        normalizer = torch.stack(sizes).reshape(len(spatial_shapes), 2)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / normalizer[None, None, None, :, None, :])
        return self.output_proj(ms_deform_attn_sample(value, spatial_shapes, locations, weights))
