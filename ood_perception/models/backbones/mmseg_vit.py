"""mmsegmentation's ViT under its parameter names (SETR, and Segmenter's distilled variant).

`layers.i.{ln1, attn.attn.{in_proj_weight, in_proj_bias, out_proj}, ln2, ffn.layers}` as
open-mmlab/mmsegmentation `VisionTransformer` saves them; the distilled ViT of Segmenter
(lmb-freiburg/diffusion-for-ood `DistilledVisionTransformer`) adds `dist_token`. The input
is padded at the bottom and right to a multiple of the patch ("corner" padding), the
position embedding is resized once for the fixed input size, and the forward pass also
returns the last block's attention keys, the features DOoD scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MMSegViTConfig:
    """Backbone sizes; `segmenter_vit_b()` and `setr_vit_l()` give the released ones."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    mlp_ratio: int = 4
    # Patch grid of the training size the pos-embed holds (img_size // patch_size).
    pos_grid: tuple[int, int] = (48, 48)
    # Tokens before the patches: 1 (class token), 2 for the distilled ViT (class, distillation).
    extra_tokens: int = 1
    # A LayerNorm (`ln1`) after the last block: Segmenter yes, SETR no.
    final_norm: bool = False
    # How the pos-embed grid is resized to the input's patch grid.
    interpolate_mode: str = "bilinear"
    layer_norm_eps: float = 1e-6


def segmenter_vit_b() -> MMSegViTConfig:
    """Segmenter ViT-B/16 with a distillation token (configs/models/segmenter_vit-b_*.py)."""
    return MMSegViTConfig(extra_tokens=2, final_norm=True, interpolate_mode="bicubic")


def setr_vit_l(pos_grid: tuple[int, int] = (48, 48)) -> MMSegViTConfig:
    """SETR ViT-L/16 (img_size 768 for Cityscapes, 512 for ADE20k: pos grid 48 or 32)."""
    return MMSegViTConfig(embed_dim=1024, depth=24, num_heads=16, pos_grid=pos_grid)


class PatchEmbed(nn.Module):
    """Corner-padded stride-`patch` convolution (`projection`): [B, 3, H, W] -> [B, N, C]."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = -x.shape[-2] % self.patch_size
        pad_w = -x.shape[-1] % self.patch_size
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.projection(x).flatten(2).transpose(1, 2)


class PackedAttention(nn.Module):
    """`torch.nn.MultiheadAttention`'s parameters (packed q/k/v), computed batch-first."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def key_projection(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> keys `W_k x + b_k` [B, N, C] (rows C..2C of the packed projection)."""
        dim = x.shape[-1]
        return F.linear(x, self.in_proj_weight[dim:2 * dim], self.in_proj_bias[dim:2 * dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class MultiheadAttention(nn.Module):
    """mmcv's wrapper: the attention as its child `attn`, the residual added outside."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = PackedAttention(dim, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class FFN(nn.Module):
    """mmcv's FFN: `layers.0.0` Linear, GELU, `layers.1` Linear (dropouts hold no weights)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU()),
                                    nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block `x + attn(ln1(x))`, then `x + ffn(ln2(x))` (mmseg's ViT layer)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, eps: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiheadAttention(dim, num_heads)
        self.ln2 = nn.LayerNorm(dim, eps=eps)
        self.ffn = FFN(dim, mlp_ratio * dim)

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """This layer's attention keys of its input tokens [B, N, C]."""
        return self.attn.attn.key_projection(self.ln1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], pos_grid: tuple[int, int],
                     extra_tokens: int, mode: str) -> torch.Tensor:
    """[1, extra + gh*gw, C] -> [1, extra + h*w, C]; the grid part resized with `mode`."""
    dim = pos_embed.shape[-1]
    tokens = pos_embed[:, :extra_tokens]
    patch = pos_embed[:, extra_tokens:].reshape(1, *pos_grid, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=grid, mode=mode, align_corners=False)
    return torch.cat((tokens, patch.flatten(2).transpose(1, 2)), dim=1)


class MMSegVisionTransformer(nn.Module):
    """[B, 3, H, W] (fixed H, W) -> (last-layer patch tokens [B, N, C], last-layer keys)."""

    def __init__(self, cfg: MMSegViTConfig, input_size: tuple[int, int]):
        super().__init__()
        self.cfg = cfg
        self.grid = tuple(math.ceil(side / cfg.patch_size) for side in input_size)
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if cfg.extra_tokens == 2:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        grid_tokens = cfg.pos_grid[0] * cfg.pos_grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.extra_tokens + grid_tokens, dim))
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(dim, cfg.num_heads, cfg.mlp_ratio, cfg.layer_norm_eps)
            for _ in range(cfg.depth))
        if cfg.final_norm:
            self.ln1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.register_buffer(
            "pos_cache", torch.zeros(1, cfg.extra_tokens + self.grid[0] * self.grid[1], dim),
            persistent=False)
        self.init_weights()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh_pos_cache())

    def init_weights(self) -> None:
        """mmseg's random init (trunc-normal 0.02 tokens and Linear weights, zero biases)."""
        for tensor in (self.pos_embed, self.cls_token, getattr(self, "dist_token", None)):
            if tensor is not None:
                nn.init.trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.refresh_pos_cache()

    @torch.no_grad()
    def refresh_pos_cache(self) -> None:
        """Resize the pos-embed to this input's patch grid; runs after every load_state_dict."""
        cfg = self.cfg
        self.pos_cache.copy_(resize_pos_embed(self.pos_embed, self.grid, cfg.pos_grid,
                                              cfg.extra_tokens, cfg.interpolate_mode))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.patch_embed(x)
        extra = [self.cls_token] + ([self.dist_token] if self.cfg.extra_tokens == 2 else [])
        extra = [t.expand(tokens.shape[0], -1, -1) for t in extra]
        tokens = torch.cat((*extra, tokens), dim=1) + self.pos_cache
        for layer in self.layers[:-1]:
            tokens = layer(tokens)
        last = self.layers[-1]
        keys = last.keys(tokens)[:, self.cfg.extra_tokens:]
        tokens = last(tokens)
        if self.cfg.final_norm:
            tokens = self.ln1(tokens)
        return tokens[:, self.cfg.extra_tokens:], keys
