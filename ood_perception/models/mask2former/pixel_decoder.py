"""Mask2Former's pixel decoder: a 6-layer deformable-attention encoder over res3-res5 + FPN.

Parameter names match detectron2's `MSDeformAttnPixelDecoder` (`input_proj.*`,
`transformer.level_embed`, `transformer.encoder.layers.*`, `adapter_1`, `layer_1`,
`mask_features`). No padding mask: the official model pads the image but never masks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.mask2former.ms_deform_attn import MSDeformAttn


@dataclass(frozen=True)
class PixelDecoderConfig:
    """Official Cityscapes values (configs/cityscapes/.../maskformer2_R50_bs16_90k.yaml)."""

    # Backbone channels of res2..res5.
    in_channels: tuple[int, int, int, int]
    conv_dim: int = 256
    mask_dim: int = 256
    heads: int = 8
    points: int = 4
    enc_layers: int = 6
    # The official code hard-codes 1024 for the deformable encoder's FFN.
    ffn_dim: int = 1024


def sine_position_embedding(batch_like: torch.Tensor, num_feats: int) -> torch.Tensor:
    """DETR's normalised sine embedding of an unmasked [B, C, H, W] map -> [1, 2*num_feats, H, W].

    Depends only on the static H, W (constant in an exported graph).
    """
    height, width = batch_like.shape[-2:]
    scale, eps = 2 * math.pi, 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32, device=batch_like.device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=batch_like.device)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=batch_like.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def embed(pos: torch.Tensor) -> torch.Tensor:
        pos = pos[:, None] / dim_t
        return torch.stack((pos[:, 0::2].sin(), pos[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = embed(y)[:, None, :].expand(height, width, num_feats)
    pos_x = embed(x)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)[None]


class ConvNorm(nn.Conv2d):
    """detectron2 `Conv2d`: conv, then `norm` (GroupNorm 32), then an optional ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, relu: bool):
        super().__init__(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)
        self.norm = nn.GroupNorm(32, out_ch)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class EncoderLayer(nn.Module):
    """Post-norm deformable self-attention + ReLU FFN."""

    def __init__(self, cfg: PixelDecoderConfig, levels: int):
        super().__init__()
        self.self_attn = MSDeformAttn(cfg.conv_dim, levels, cfg.heads, cfg.points)
        self.norm1 = nn.LayerNorm(cfg.conv_dim)
        self.linear1 = nn.Linear(cfg.conv_dim, cfg.ffn_dim)
        self.linear2 = nn.Linear(cfg.ffn_dim, cfg.conv_dim)
        self.norm2 = nn.LayerNorm(cfg.conv_dim)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference: torch.Tensor,
                shapes: tuple[tuple[int, int], ...]) -> torch.Tensor:
        src = self.norm1(src + self.self_attn(src + pos, reference, src, shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class Encoder(nn.Module):
    """Holds the layers under the official name `transformer.encoder.layers`."""

    def __init__(self, cfg: PixelDecoderConfig, levels: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg, levels) for _ in range(cfg.enc_layers))


class DeformableTransformer(nn.Module):
    """`MSDeformAttnTransformerEncoderOnly`: level embeddings + encoder layers."""

    def __init__(self, cfg: PixelDecoderConfig, levels: int):
        super().__init__()
        self.level_embed = nn.Parameter(torch.randn(levels, cfg.conv_dim))
        self.encoder = Encoder(cfg, levels)

    def forward(self, srcs: list[torch.Tensor], pos: list[torch.Tensor]) -> torch.Tensor:
        shapes = tuple((int(s.shape[2]), int(s.shape[3])) for s in srcs)
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)
        pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i]
                              for i, p in enumerate(pos)], dim=1)
        reference = reference_points(shapes, flat.device)
        for layer in self.encoder.layers:
            flat = layer(flat, pos_flat, reference, shapes)
        return flat


def reference_points(shapes: tuple[tuple[int, int], ...], device: torch.device) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0, 1]: [1, S, L, 2] as (x, y)."""
    points = []
    for height, width in shapes:
        y = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
        x = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=-1))
    return torch.cat(points, 0)[None, :, None, :].expand(1, -1, len(shapes), 2)


class MSDeformAttnPixelDecoder(nn.Module):
    """res2..res5 -> (mask features [B, mask_dim, H/4, W/4], 3 decoder maps, 1/32 first)."""

    def __init__(self, cfg: PixelDecoderConfig):
        super().__init__()
        levels = 3
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, cfg.conv_dim, 1), nn.GroupNorm(32, cfg.conv_dim))
            for ch in cfg.in_channels[1:][::-1])
        self.transformer = DeformableTransformer(cfg, levels)
        self.mask_features = nn.Conv2d(cfg.conv_dim, cfg.mask_dim, 1)
        # One extra FPN level (stride 4): lateral `adapter_1`, output `layer_1`.
        self.adapter_1 = ConvNorm(cfg.in_channels[0], cfg.conv_dim, 1, relu=False)
        self.layer_1 = ConvNorm(cfg.conv_dim, cfg.conv_dim, 3, relu=True)
        self.pos_feats = cfg.conv_dim // 2

    def forward(self, features: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        res2, *deep = features
        deep = deep[::-1]
        srcs = [proj(x) for proj, x in zip(self.input_proj, deep, strict=True)]
        pos = [sine_position_embedding(x, self.pos_feats) for x in deep]
        memory = self.transformer(srcs, pos)
        outs = []
        start = 0
        for src in srcs:
            height, width = src.shape[-2:]
            level = memory[:, start:start + height * width]
            outs.append(level.transpose(1, 2).reshape(src.shape[0], -1, height, width))
            start += height * width
        lateral = self.adapter_1(res2)
        fpn = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear",
                                      align_corners=False)
        fpn = self.layer_1(fpn)
        return self.mask_features(fpn), outs
