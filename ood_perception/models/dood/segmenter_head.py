"""Segmenter's mask transformer head as DOoD's official checkpoints were trained with it.

Parameter names of mmsegmentation's `SegmenterMaskTransformerHead` (`decode_head.*`). The
DOoD code (lmb-freiburg/diffusion-for-ood, `decode_heads/segmenter_mask_head.py`) replaces
its forward: patches and class embeddings are multiplied by `patch_proj.weight` and
`classes_proj.weight` as stored, NOT transposed as an `nn.Linear` would; its released
weights were trained that way, so this head does the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.backbones.mmseg_vit import TransformerEncoderLayer


class SegmenterMaskHead(nn.Module):
    """Patch tokens [B, h*w, C] -> class masks [B, K, h, w] at the patch grid."""

    def __init__(self, in_channels: int = 768, embed_dim: int = 768, num_layers: int = 1,
                 num_heads: int = 6, num_classes: int = 19, mlp_ratio: int = 4):
        super().__init__()
        self.num_classes = num_classes
        # The head's LayerNorms use torch's default eps (its config sets no norm_cfg).
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dim, num_heads, mlp_ratio, eps=1e-5)
            for _ in range(num_layers))
        self.dec_proj = nn.Linear(in_channels, embed_dim)
        self.cls_emb = nn.Parameter(torch.randn(1, num_classes, embed_dim) * 0.02)
        self.patch_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.classes_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.decoder_norm = nn.LayerNorm(embed_dim)
        self.mask_norm = nn.LayerNorm(num_classes)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.dec_proj(tokens)
        x = torch.cat((x, self.cls_emb.expand(x.shape[0], -1, -1)), dim=1)
        for layer in self.layers:
            x = layer(x)
        x = self.decoder_norm(x)
        patches = F.normalize(x[:, :-self.num_classes] @ self.patch_proj.weight, dim=2)
        classes = F.normalize(x[:, -self.num_classes:] @ self.classes_proj.weight, dim=2)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        return masks.transpose(1, 2).reshape(x.shape[0], self.num_classes, *grid)
