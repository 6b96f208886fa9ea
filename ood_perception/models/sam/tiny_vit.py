"""MobileSAM's TinyViT-5M image encoder (ChaoningZhang/MobileSAM `tiny_vit_sam.py`), under its
parameter names.

A convolutional stage (MBConv) then three windowed-attention stages; the last patch merging
keeps the 64x64 grid (stride 1), and SAM's neck maps it to the same [B, 256, 64, 64] embedding
as the ViT encoders, so SAM's prompt encoder and mask decoder work unchanged. Batch norms run
with their stored statistics (inference only).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.layers.layer_norm_2d import LayerNorm2d


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM's `build_sam_vit_t` settings (TinyViT-5M at 1024x1024)."""

    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256

    def merge_stride(self, stage: int) -> int:
        """Stride of the patch merging after `stage`: 1 into a 320-, 448- or 576-wide stage
        (MobileSAM's rule, which keeps its last stage at S/16), else 2."""
        return 1 if self.embed_dims[stage + 1] in (320, 448, 576) else 2

    def stage_sizes(self) -> tuple[int, ...]:
        """Token-grid side of each stage (256, 128, 64, 64 for MobileSAM)."""
        sizes = [self.img_size // 4]
        for stage in range(len(self.depths) - 1):
            sizes.append(sizes[-1] // self.merge_stride(stage))
        return tuple(sizes)

    @property
    def grid(self) -> int:
        """Side of the output grid (64 for MobileSAM)."""
        return self.stage_sizes()[-1]


MOBILE_SAM = TinyViTConfig()


class Conv2d_BN(nn.Sequential):  # noqa: N801 (the official class name)
    """Bias-free convolution `c` then batch norm `bn`."""

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: [B, 3, S, S] -> [B, C, S/4, S/4]."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.seq = nn.Sequential(Conv2d_BN(3, embed_dim // 2, 3, 2, 1), nn.GELU(),
                                 Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU."""

    def __init__(self, channels: int, expand_ratio: float):
        super().__init__()
        hidden = int(channels * expand_ratio)
        self.conv1 = Conv2d_BN(channels, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, channels)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(out) + x)


class PatchMerging(nn.Module):
    """[B, C, H, W] or tokens [B, H*W, C] -> tokens [B, (H/s)*(W/s), C'] (s = `stride`)."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.view(x.shape[0], self.resolution, self.resolution, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """TinyViT's feed-forward with its own pre-norm: `norm -> fc1 -> GELU -> fc2`."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def offset_indices(window: int) -> torch.Tensor:
    """[w*w, w*w] index of each query-key |dy|, |dx| offset into `attention_biases`, numbered
    in order of first appearance as the official code does."""
    points = list(itertools.product(range(window), range(window)))
    offsets: dict[tuple[int, int], int] = {}
    indices = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            indices.append(offsets.setdefault(offset, len(offsets)))
    return torch.tensor(indices).view(len(points), len(points))


class Attention(nn.Module):
    """Window attention with a pre-norm and a learned bias per head and offset."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # One bias per head and |dy|, |dx| offset: window * window of them.
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("attention_bias_idxs", offset_indices(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.key_dim], dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class TinyViTBlock(nn.Module):
    """Window attention (tokens zero-padded to whole windows), a depthwise `local_conv`, MLP."""

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int,
                 mlp_ratio: float, local_conv_size: int):
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, local_conv_size, 1, local_conv_size // 2,
                                    groups=dim)

    def _windowed(self, x: torch.Tensor) -> torch.Tensor:
        size, window = self.resolution, self.window
        b, n, c = x.shape
        pad = (window - size % window) % window
        x = x.view(b, size, size, c)
        if pad:
            x = F.pad(x, (0, 0, 0, pad, 0, pad))
        padded = size + pad
        count = padded // window
        x = x.view(b, count, window, count, window, c).transpose(2, 3)
        x = self.attn(x.reshape(b * count * count, window * window, c))
        x = x.view(b, count, count, window, window, c).transpose(2, 3)
        x = x.reshape(b, padded, padded, c)
        if pad:
            x = x[:, :size, :size].contiguous()
        return x.view(b, n, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        attended = self.attn(x) if self.resolution == self.window else self._windowed(x)
        x = x + attended
        x = x.transpose(1, 2).reshape(b, c, self.resolution, self.resolution)
        x = self.local_conv(x).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on the [B, C, H, W] map, then patch merging to tokens."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks on tokens, then patch merging unless it is the last stage."""

    def __init__(self, blocks: list[TinyViTBlock], downsample: PatchMerging | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """Normalised, padded [B, 3, S, S] -> image embedding [B, 256, S/16, S/16]."""

    def __init__(self, cfg: TinyViTConfig = MOBILE_SAM):
        super().__init__()
        self.img_size = cfg.img_size
        self.grid = cfg.grid
        dims, stages = cfg.embed_dims, len(cfg.depths)
        self.patch_embed = PatchEmbed(dims[0])
        sizes = cfg.stage_sizes()
        self.layers = nn.ModuleList()
        for i in range(stages):
            downsample = None
            if i < stages - 1:
                downsample = PatchMerging(sizes[i], dims[i], dims[i + 1], cfg.merge_stride(i))
            if i == 0:
                self.layers.append(ConvLayer(dims[0], cfg.depths[0], cfg.mbconv_expand_ratio,
                                             downsample))
                continue
            self.layers.append(BasicLayer(
                [TinyViTBlock(dims[i], sizes[i], cfg.num_heads[i], cfg.window_sizes[i],
                              cfg.mlp_ratio, cfg.local_conv_size)
                 for _ in range(cfg.depths[i])], downsample))
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        x = x.view(x.shape[0], self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return self.neck(x)
