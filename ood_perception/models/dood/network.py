"""DOoD networks: a frozen segmentor whose last-block attention keys feed the diffusion score.

Two segmentor families: the mmsegmentation ViTs of the official checkpoints (Segmenter,
SETR; `MMSegSegmentor`) and this package's DINOv2 segmentor of the UEM models
(`DinoV2KeySegmentor`, the same parameter names as `UEMSegmentor`), so any UEM segmentor can
be scored with DOoD too. Both return (logits at their head's resolution, keys [B, h*w, C]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.backbones.mmseg_vit import MMSegVisionTransformer
from ood_perception.models.dood.diffusion import (
    DiffusionModel,
    DiffusionScore,
    DiffusionScoreConfig,
)
from ood_perception.models.uem.segmentor import UEMSegmentor


class MMSegSegmentor(nn.Module):
    """mmseg `EncoderDecoder` parts: `backbone` + `decode_head` (checkpoint names)."""

    def __init__(self, backbone: MMSegVisionTransformer, decode_head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head

    @property
    def grid(self) -> tuple[int, int]:
        return self.backbone.grid

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, keys = self.backbone(x)
        return self.decode_head(tokens, self.grid), keys


class DinoV2KeySegmentor(UEMSegmentor):
    """The UEM segmentor (DINOv2 + FPN + head) that also returns its last block's keys."""

    @property
    def grid(self) -> tuple[int, int]:
        return self.backbone.dinov2.grid

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vit = self.backbone.dinov2
        tokens, levels, keys = vit.forward_with_keys(x, self.backbone.layers)
        feats = self.backbone.learnable_layers(tokens, levels, vit.grid)
        return self.segmentation_head(feats), keys


class DOoDNetwork(nn.Module):
    """Normalised images [B, 3, H, W] -> (logits [B, K, h', w'], E [B, 1, h, w] on the grid)."""

    def __init__(self, segmentor: nn.Module, diffusion: DiffusionModel,
                 score: DiffusionScoreConfig):
        super().__init__()
        self.segmentor = segmentor
        self.diffusion = diffusion
        self.diffusion_score = DiffusionScore(score, diffusion.normalization.shift.shape[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, keys = self.segmentor(x)
        score = self.diffusion_score(self.diffusion, keys)
        return logits, score.reshape(score.shape[0], 1, *self.segmentor.grid)


class WholeImage(nn.Module):
    """mmseg's "whole" inference: one pass over the input; logits resized bilinearly and the
    diffusion score by nearest neighbour (as the official `upsample_scores`) to [H, W]."""

    def __init__(self, network: DOoDNetwork, size: tuple[int, int]):
        super().__init__()
        self.network = network
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, score = self.network(x)
        logits = F.interpolate(logits, size=self.size, mode="bilinear", align_corners=False)
        return logits, F.interpolate(score, size=self.size, mode="nearest")
