"""Mask2Former's masked-attention transformer decoder (`MultiScaleMaskedTransformerDecoder`).

Each layer cross-attends only to where the previous prediction, resized to that layer's feature
level, has sigmoid >= 0.5 (rows masked everywhere are unmasked), then self-attends, then an
FFN. Parameter names match detectron2's Mask2Former (`sem_seg_head.predictor.*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.layers.mlp import MLP
from ood_perception.models.mask2former.pixel_decoder import sine_position_embedding


@dataclass(frozen=True)
class DecoderConfig:
    """Official Cityscapes values; `num_classes` counts the class outputs before no-object."""

    num_classes: int = 20
    num_queries: int = 100
    hidden_dim: int = 256
    heads: int = 8
    ffn_dim: int = 2048
    # DEC_LAYERS 10 in the configs = 9 layers + the prediction on the learnable queries.
    layers: int = 9
    mask_dim: int = 256


class MultiheadAttention(nn.Module):
    """`nn.MultiheadAttention` (sequence-first, same parameter names) as plain exportable ops."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """query [Lq, B, C], key/value [Lk, B, C], mask [B*heads, Lq, Lk] (True = blocked)."""
        lq, batch, dim = query.shape
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        head_dim = dim // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:  # [L, B, C] -> [B*heads, L, head_dim]
            return x.reshape(x.shape[0], -1, head_dim).transpose(0, 1)

        q = split(F.linear(query, w_q, b_q)) * head_dim ** -0.5
        k = split(F.linear(key, w_k, b_k))
        v = split(F.linear(value, w_v, b_v))
        logits = q @ k.transpose(1, 2)
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(lq, batch, dim)
        return self.out_proj(out)


class SelfAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, q, tgt))


class CrossAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.multihead_attn = MultiheadAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
                pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        out = self.multihead_attn(tgt + query_pos, memory + pos, memory, mask)
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """(3 maps [B, C, h_l, w_l] 1/32 first, mask features [B, D, H/4, W/4])
    -> (class logits [B, Q, K+1], mask logits [B, Q, H/4, W/4]) of the last layer."""

    levels = 3

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        dim = cfg.hidden_dim
        self.heads = cfg.heads
        self.pos_feats = dim // 2
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(dim, cfg.heads) for _ in range(cfg.layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(dim, cfg.heads) for _ in range(cfg.layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(dim, cfg.ffn_dim) for _ in range(cfg.layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.query_feat = nn.Embedding(cfg.num_queries, dim)
        self.query_embed = nn.Embedding(cfg.num_queries, dim)
        self.level_embed = nn.Embedding(self.levels, dim)
        self.class_embed = nn.Linear(dim, cfg.num_classes + 1)
        self.mask_embed = MLP(dim, dim, cfg.mask_dim, 3)

    def predict(self, output: torch.Tensor, mask_features: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries [Q, B, C] -> (class logits [B, Q, K+1], mask logits [B, Q, H/4, W/4])."""
        decoded = self.decoder_norm(output).transpose(0, 1)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        return self.class_embed(decoded), masks

    def attention_mask(self, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """[B, Q, H/4, W/4] logits -> [B*heads, Q, h*w] bool, True = not attended."""
        resized = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        blocked = resized.sigmoid().flatten(2) < 0.5
        blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
        return blocked.unsqueeze(1).expand(-1, self.heads, -1, -1).flatten(0, 1)

    def forward(self, features: list[torch.Tensor], mask_features: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = [tuple(int(s) for s in f.shape[-2:]) for f in features]
        pos = [sine_position_embedding(f, self.pos_feats).flatten(2).permute(2, 0, 1)
               for f in features]
        src = [(f.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1)
               for i, f in enumerate(features)]
        batch = mask_features.shape[0]
        query_pos = self.query_embed.weight[:, None].expand(-1, batch, -1)
        output = self.query_feat.weight[:, None].expand(-1, batch, -1)
        classes, masks = self.predict(output, mask_features)
        for i, cross in enumerate(self.transformer_cross_attention_layers):
            level = i % self.levels
            blocked = self.attention_mask(masks, sizes[level])
            output = cross(output, src[level], blocked, pos[level], query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            classes, masks = self.predict(output, mask_features)
        return classes, masks
