"""SAM's ViT image encoder (segment-anything `ImageEncoderViT`), under its parameter names.

Windowed attention (14x14, zero-padded) in most blocks and global attention in a few, both with
decomposed relative position terms; a conv neck maps the tokens to the [B, 256, 64, 64] image
embedding for a 1024x1024 input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.layers.layer_norm_2d import LayerNorm2d
from ood_perception.models.layers.mlp import MLPBlock


@dataclass(frozen=True)
class SamViTConfig:
    """segment-anything `_build_sam` encoder settings; presets below are ViT-B/L/H."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    # Blocks that attend over the whole token grid; the others use windows.
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    out_chans: int = 256
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> int:
        """Side of the token grid and of the image embedding (64 at 1024 / 16)."""
        return self.img_size // self.patch_size


VIT_B = SamViTConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11))
VIT_L = SamViTConfig(embed_dim=1024, depth=24, num_heads=16,
                     global_attn_indexes=(5, 11, 17, 23))
VIT_H = SamViTConfig(embed_dim=1280, depth=32, num_heads=16,
                     global_attn_indexes=(7, 15, 23, 31))


class PatchEmbed(nn.Module):
    """[B, 3, H, W] -> [B, H/16, W/16, C] tokens (`patch_embed.proj`)."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def relative_positions(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """[q_size, k_size, C] embeddings of every query-key offset along one axis.

    The table has 2 * max(q, k) - 1 rows, as the checkpoints store it at this size.
    """
    q_coords = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[offsets.long()]


class Attention(nn.Module):
    """Multi-head attention over an [B, H, W, C] grid with decomposed relative positions."""

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.num_heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", q.reshape(-1, h, w, q.shape[-1]),
                             relative_positions(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", q.reshape(-1, h, w, q.shape[-1]),
                             relative_positions(w, w, self.rel_pos_w))
        attn = (attn.view(-1, h, w, h, w) + rel_h[:, :, :, :, None]
                + rel_w[:, :, :, None, :]).view(-1, h * w, h * w)
        out = attn.softmax(dim=-1) @ v
        out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """[B, H, W, C] -> [B * nW, window, window, C], zero-padding H and W up to the window."""
    b, h, w, c = x.shape
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int],
                       size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `window_partition`, dropping the padding: -> [B, H, W, C]."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :] if (hp > h or wp > w) else x


class Block(nn.Module):
    """Pre-norm transformer block; `window_size` 0 means global attention."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int,
                 grid: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        size = (window_size, window_size) if window_size else (grid, grid)
        self.attn = Attention(dim, num_heads, size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size:
            size = x.shape[1], x.shape[2]
            x, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """Normalised, padded [B, 3, S, S] -> image embedding [B, out_chans, S/16, S/16]."""

    def __init__(self, cfg: SamViTConfig = VIT_B):
        super().__init__()
        self.img_size = cfg.img_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid, cfg.grid, cfg.embed_dim))
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio,
                  0 if index in cfg.global_attn_indexes else cfg.window_size, cfg.grid)
            for index in range(cfg.depth))
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
