"""DINOv2 ViT with the official parameter names (facebookresearch/dinov2, block_chunks=0).

One forward returns the final normed patch tokens and any normed intermediate block
outputs, so UEM needs one backbone pass per window instead of the official two; the same
pass can also return the last block's attention keys (the features DOoD scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.layers.mlp import Mlp


@dataclass(frozen=True)
class ViTConfig:
    """Backbone sizes; presets below match the hub models `dinov2_vit{s,b,l,g}14[_reg]`."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 14
    mlp_ratio: float = 4.0
    # 4 for the `_reg` models; 0 for the originals.
    num_register_tokens: int = 4
    # "mlp" (fc1/fc2, GELU) or "swiglu" (w12/w3, ViT-g).
    ffn: str = "mlp"
    # Side of the square patch grid the pos-embed was trained at (518 / 14 = 37).
    pos_grid: int = 37
    layer_norm_eps: float = 1e-6

    @property
    def reg_interpolation(self) -> bool:
        """Reg models resize the pos-embed by size with antialias; others by scale + 0.1."""
        return self.num_register_tokens > 0


VIT_PRESETS = {
    "s": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "b": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    "l": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "g": ViTConfig(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}


class PatchEmbed(nn.Module):
    """[B, 3, H, W] -> [B, N, C] with a stride-`patch` convolution (`patch_embed.proj`)."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused `qkv` projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def key_projection(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] block input after `norm1` -> attention keys [B, N, C] (rows C..2C of qkv)."""
        dim = x.shape[-1]
        return F.linear(x, self.qkv.weight[dim:2 * dim], self.qkv.bias[dim:2 * dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class SwiGLUFFN(nn.Module):
    """ViT-g feed-forward: w12 -> (silu(x1) * x2) -> w3, hidden rounded up to 8."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    """Per-channel residual scale (`gamma`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both branches."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        dim = cfg.embed_dim
        hidden = int(dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(dim, cfg.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = SwiGLUFFN(dim, hidden) if cfg.ffn == "swiglu" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def resize_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int], pos_grid: int, reg_interpolation: bool
) -> torch.Tensor:
    """[1, 1 + M*M, C] -> [1, 1 + h*w, C] following DINOv2's `interpolate_pos_encoding`."""
    if grid == (pos_grid, pos_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    cls_pos = pos_embed[:, :1].float()
    patch = pos_embed[:, 1:].float().reshape(1, pos_grid, pos_grid, dim).permute(0, 3, 1, 2)
    if reg_interpolation:
        patch = F.interpolate(patch, size=grid, mode="bicubic", antialias=True)
    else:
        scale = ((grid[0] + 0.1) / pos_grid, (grid[1] + 0.1) / pos_grid)
        patch = F.interpolate(patch, scale_factor=scale, mode="bicubic", antialias=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim)
    return torch.cat((cls_pos, patch), dim=1).to(pos_embed.dtype)


class DinoVisionTransformer(nn.Module):
    """ViT for a fixed input size: the pos-embed is resized once and cached (static graph)."""

    def __init__(self, cfg: ViTConfig, input_size: tuple[int, int]):
        super().__init__()
        self.cfg = cfg
        self.grid = (input_size[0] // cfg.patch_size, input_size[1] // cfg.patch_size)
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pos_grid**2, dim))
        if cfg.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.register_buffer("pos_cache", torch.zeros(1, 1 + self.grid[0] * self.grid[1], dim),
                             persistent=False)
        self.init_weights()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh_pos_cache())

    def init_weights(self) -> None:
        """Random weights in DINOv2's spirit (trunc-normal 0.02); used for --random-init."""
        for tensor in (self.pos_embed, self.cls_token):
            nn.init.trunc_normal_(tensor, std=0.02)
        if self.cfg.num_register_tokens:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.refresh_pos_cache()

    @torch.no_grad()
    def refresh_pos_cache(self) -> None:
        """Recompute the resized pos-embed; runs after every load_state_dict."""
        self.pos_cache.copy_(resize_pos_embed(
            self.pos_embed, self.grid, self.cfg.pos_grid, self.cfg.reg_interpolation))

    def forward(
        self, x: torch.Tensor, layers: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """[B, 3, H, W] -> (final normed patch tokens [B, N, C], normed tokens of `layers`)."""
        final, intermediates, _ = self.forward_with_keys(x, layers, keys=False)
        return final, intermediates

    def forward_with_keys(
        self, x: torch.Tensor, layers: tuple[int, ...] = (), keys: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """`forward` plus the last block's attention keys of the patch tokens [B, N, C]."""
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1) + self.pos_cache
        prefix = 1
        if self.cfg.num_register_tokens:
            regs = self.register_tokens.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat((tokens[:, :1], regs, tokens[:, 1:]), dim=1)
            prefix += self.cfg.num_register_tokens
        intermediates = []
        last_keys = None
        for index, block in enumerate(self.blocks):
            if keys and index == len(self.blocks) - 1:
                last_keys = block.attn.key_projection(block.norm1(tokens))[:, prefix:]
            tokens = block(tokens)
            if index in layers:
                intermediates.append(self.norm(tokens)[:, prefix:])
        return self.norm(tokens)[:, prefix:], intermediates, last_keys
