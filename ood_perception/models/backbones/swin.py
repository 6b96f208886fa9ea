"""Swin Transformer backbone as detectron2's Mask2Former `D2SwinTransformer` (same names).

Exportable: every pad, window count and shift mask comes from the static feature size (only the
batch is dynamic), and the shift masks are built from those sizes alone. As in the official
code, a stage pads its map to a multiple of the window after `norm1` with zeros and those
padded tokens take part in the attention of their window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.layers.mlp import Mlp


@dataclass(frozen=True)
class SwinConfig:
    """Sizes of one Swin variant (MODEL.SWIN in the official configs)."""

    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    patch_size: int = 4
    mlp_ratio: float = 4.0

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of res2..res5."""
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.depths)))


SWIN_T = SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), 7)
SWIN_B = SwinConfig(128, (2, 2, 18, 2), (4, 8, 16, 32), 12)
SWIN_L = SwinConfig(192, (2, 2, 18, 2), (6, 12, 24, 48), 12)


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """[B, H, W, C] (H, W multiples of ws) -> [B * nW, ws * ws, C]."""
    _, height, width, channels = x.shape
    x = x.reshape(-1, height // ws, ws, width // ws, ws, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, channels)


def window_reverse(windows: torch.Tensor, ws: int, height: int, width: int) -> torch.Tensor:
    """[B * nW, ws * ws, C] -> [B, H, W, C]."""
    channels = windows.shape[-1]
    x = windows.reshape(-1, height // ws, width // ws, ws, ws, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def _bands(size: int, ws: int, shift: int, device: torch.device | None) -> torch.Tensor:
    """Region of each row (or column) after the cyclic shift: 0, 1 or 2 (official slices).

    Computed on `device` from static sizes: no host copy, so CUDA graphs can capture it.
    """
    index = torch.arange(size, device=device)
    return (index >= size - ws).float() + (index >= size - shift).float()


def shift_mask(height: int, width: int, ws: int, shift: int,
               device: torch.device | None = None) -> torch.Tensor:
    """Additive mask [nW, ws*ws, ws*ws] (0 or -100) keeping shifted windows' regions apart.

    Built from static sizes only, so an exported graph holds it as a constant.
    """
    rows = _bands(height, ws, shift, device)
    cols = _bands(width, ws, shift, device)
    regions = (rows[:, None] * 3 + cols[None, :])[None, :, :, None]
    windows = window_partition(regions, ws).squeeze(-1)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


def relative_position_index(ws: int) -> torch.Tensor:
    """[ws*ws, ws*ws] index into the (2ws-1)^2 bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias."""

    def __init__(self, dim: int, ws: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.randn((2 * ws - 1) ** 2, heads) * 0.02)
        # Persistent: the official checkpoints hold it.
        self.register_buffer("relative_position_index", relative_position_index(ws))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x [B * nW, N, C]; mask [nW, N, N] additive or None."""
        tokens, channels = x.shape[1:]
        qkv = self.qkv(x).reshape(-1, tokens, 3, self.heads, channels // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(tokens, tokens, -1).permute(2, 0, 1)[None]
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.reshape(-1, windows, self.heads, tokens, tokens) + mask[None, :, None]
            attn = attn.reshape(-1, self.heads, tokens, tokens)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, tokens, channels)
        return self.proj(out)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ws: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """x [B, H*W, C] -> same."""
        channels = x.shape[-1]
        ws, shift = self.ws, self.shift
        y = self.norm1(x).reshape(-1, height, width, channels)
        pad_b, pad_r = (ws - height % ws) % ws, (ws - width % ws) % ws
        if pad_b or pad_r:
            y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = height + pad_b, width + pad_r
        mask = None
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            mask = shift_mask(hp, wp, ws, shift, x.device).to(x.dtype)
        y = window_reverse(self.attn(window_partition(y, ws), mask), ws, hp, wp)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        y = y[:, :height, :width].reshape(-1, height * width, channels)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (x0, x1, x2, x3 order as official) -> LayerNorm -> Linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x.reshape(-1, height, width, x.shape[-1])
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      dim=-1)
        return self.reduction(self.norm(x.flatten(1, 2)))


class BasicLayer(nn.Module):
    """One stage: blocks alternating plain / shifted windows, then optional patch merging."""

    def __init__(self, dim: int, depth: int, heads: int, cfg: SwinConfig, downsample: bool):
        super().__init__()
        ws = cfg.window_size
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, heads, ws, 0 if i % 2 == 0 else ws // 2, cfg.mlp_ratio)
            for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None


class PatchEmbed(nn.Module):
    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.patch = cfg.patch_size
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C, ceil(H/p), ceil(W/p)] (zero padding at bottom / right)."""
        height, width = x.shape[-2:]
        pad_r, pad_b = -width % self.patch, -height % self.patch
        if pad_r or pad_b:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SwinTransformer(nn.Module):
    """[B, 3, H, W] normalised -> [res2, res3, res4, res5] ([B, C_i, H/2^(i+2), W/2^(i+2)])."""

    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.patch_embed = PatchEmbed(cfg)
        stages = len(cfg.depths)
        self.layers = nn.ModuleList(
            BasicLayer(cfg.channels[i], cfg.depths[i], cfg.num_heads[i], cfg, i < stages - 1)
            for i in range(stages))
        for i, channels in enumerate(cfg.channels):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))
        self.channels = cfg.channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        height, width = (int(s) for s in x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, layer in enumerate(self.layers):
            for block in layer.blocks:
                x = block(x, height, width)
            out = getattr(self, f"norm{i}")(x)
            outs.append(out.reshape(-1, height, width, self.channels[i]).permute(0, 3, 1, 2))
            if layer.downsample is not None:
                x = layer.downsample(x, height, width)
                height, width = (height + 1) // 2, (width + 1) // 2
        return outs
