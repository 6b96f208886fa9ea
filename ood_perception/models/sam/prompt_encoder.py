"""SAM's prompt encoder for box prompts (segment-anything `PromptEncoder`), under its names.

A box becomes two corner tokens: a random-Fourier positional encoding of each corner plus a
learned corner embedding (`point_embeddings.2` top-left, `.3` bottom-right). Without a mask
prompt the dense embedding is `no_mask_embed` everywhere. The point and mask-prompt weights of
the official checkpoints are not needed for boxes (see `checkpoints.NOT_NEEDED`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Indices of the box-corner embeddings in the official `point_embeddings` list (0 and 1 are the
# negative and positive point labels).
BOX_CORNERS = (2, 3)


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies: (x, y) in [0, 1] -> [..., 2F]."""

    def __init__(self, num_pos_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix",
                             torch.randn((2, num_pos_feats)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """[..., 2] normalised coordinates -> [..., 2F] (sin then cos)."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense(self, size: tuple[int, int]) -> torch.Tensor:
        """[2F, h, w] encoding of the centres of an h x w grid."""
        h, w = size
        grid = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Boxes [N, 4] (x0, y0, x1, y1 in SAM's input frame) -> sparse [N, 2, C], dense
    [N, C, h, w] embeddings."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024)):
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleDict(
            {str(index): nn.Embedding(1, embed_dim) for index in BOX_CORNERS})
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """[1, C, h, w] positional encoding of the image-embedding grid."""
        return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)

    def forward(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = self.input_image_size
        corners = (boxes + 0.5).reshape(-1, 2, 2)  # pixel centres
        size = torch.tensor([float(width), float(height)], device=boxes.device)
        sparse = self.pe_layer.encode(corners / size)
        first, second = (self.point_embeddings[str(index)].weight for index in BOX_CORNERS)
        sparse = sparse + torch.stack([first[0], second[0]])
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            boxes.shape[0], -1, *self.image_embedding_size)
        return sparse, dense
