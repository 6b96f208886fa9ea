"""SAM's mask decoder (segment-anything `MaskDecoder`) with the single-mask output S2M uses.

The transformer still runs every output token (IoU token and all four mask tokens, whose
self-attention shapes token 0), but only mask token 0 is turned into a mask: the hypernetwork
MLPs of tokens 1-3 are not needed (see `checkpoints.NOT_NEEDED`).
"""

from __future__ import annotations

import torch
from torch import nn

from ood_perception.models.layers.layer_norm_2d import LayerNorm2d
from ood_perception.models.layers.mlp import MLP
from ood_perception.models.sam.transformer import TwoWayTransformer

# Output tokens of the official decoder: the single mask plus three disambiguating masks.
NUM_MASK_TOKENS = 4


class MaskDecoder(nn.Module):
    """(embeddings [N, C, h, w] per prompt, PE [1, C, h, w], sparse [N, T, C], dense
    [N, C, h, w]) -> (mask logits [N, 1, 4h, 4w], IoU prediction [N, 1])."""

    def __init__(self, transformer_dim: int = 256, transformer: TwoWayTransformer | None = None,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256):
        super().__init__()
        self.transformer = transformer if transformer is not None else TwoWayTransformer()
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(NUM_MASK_TOKENS, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2,
                               stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            [MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)])
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, NUM_MASK_TOKENS,
                                       iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(count, -1, -1),
                            sparse_prompt_embeddings], dim=1)
        src = image_embeddings + dense_prompt_embeddings
        pos_src = image_pe.expand(count, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)
        hyper = self.output_hypernetworks_mlps[0](hs[:, 1, :])
        b, c, h, w = upscaled.shape
        masks = (hyper.unsqueeze(1) @ upscaled.view(b, c, h * w)).view(b, 1, h, w)
        iou = self.iou_prediction_head(hs[:, 0, :])[:, :1]
        return masks, iou
