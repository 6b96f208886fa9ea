"""Per-pixel classification heads of UEM (official names): linear and GMM (inference only)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Official `misc.MLP`: Linear/ReLU stack stored as `_layers` (keys 0, 2, 4, ...)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layers.append(nn.Linear(dims[index], dims[index + 1]))
            if index < num_layers - 1:
                layers.append(nn.ReLU())
        self._layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._layers(x)


class LinearHead(nn.Module):
    """[B, D, H, W] -> [B, K, H, W] logits with one Linear (`_head`) per pixel."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self._head = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GMMSegHead(nn.Module):
    """GMMSeg inference: max-over-components diagonal-Gaussian log-likelihood per class.

    Training-only state of the official head (`queue`, `queue_ptr`, `iteration_counter`,
    `eye_matrix`) is not kept; `uem_checkpoints` drops it by name.
    """

    def __init__(self, embedding_dim: int, num_classes: int, num_components: int):
        super().__init__()
        shape = (num_classes, num_components, embedding_dim)
        self.means = nn.Parameter(torch.randn(shape) * 0.02, requires_grad=False)
        self.diagonal = nn.Parameter(torch.ones(shape), requires_grad=False)
        self.feat_norm = nn.LayerNorm(embedding_dim)
        self.mask_norm = nn.LayerNorm(num_classes)

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """[N, D] normalised features -> [N, K, M] log N(x; mean, diag(diagonal^2)).

        The Mahalanobis term is the difference, then the scale, squared and summed, one
        component at a time ([N, D] temporaries): the expanded x^2 - 2 x mean + mean^2 cancels
        where x is near a mean, and its folded 1 / diagonal^2 leaves fp16's range for the small
        diagonals of trained heads.
        """
        classes, components, dim = self.means.shape
        means = F.normalize(self.means, dim=-1).reshape(-1, dim)
        scales = self.diagonal.reshape(-1, dim).reciprocal()
        maha = torch.stack([((x - mean) * scale).square().sum(-1)
                            for mean, scale in zip(means, scales, strict=True)], dim=-1)
        const = -0.5 * dim * math.log(2 * math.pi) - self.diagonal.reshape(-1, dim).log().sum(-1)
        return (const - 0.5 * maha).reshape(-1, classes, components)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w = x.shape
        feats = F.normalize(self.feat_norm(x.permute(0, 2, 3, 1).reshape(-1, d)), dim=-1)
        best = self.component_log_prob(feats).amax(dim=-1)
        return self.mask_norm(best).reshape(b, h, w, -1).permute(0, 3, 1, 2)


def build_head(kind: str, embedding_dim: int, num_classes: int, num_components: int) -> nn.Module:
    """`kind` is "linear" or "gmm"."""
    if kind == "gmm":
        return GMMSegHead(embedding_dim, num_classes, num_components)
    return LinearHead(embedding_dim, num_classes)
