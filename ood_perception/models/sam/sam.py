"""SAM assembled from its three parts, the named variants and the frame geometry they share.

`image_encoder` (ViT-B/L/H or MobileSAM's TinyViT), `prompt_encoder`, `mask_decoder`: the
official top-level names, so an official checkpoint's keys load as they are. Every variant
keeps SAM's 1024x1024 input, 256-channel 64x64 embedding, prompt encoder and mask decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ood_perception.contract import IMAGENET_MEAN_255, IMAGENET_STD_255
from ood_perception.errors import ConfigurationError
from ood_perception.models.sam import MODEL_NAMES
from ood_perception.models.sam.image_encoder import (
    VIT_B,
    VIT_H,
    VIT_L,
    ImageEncoderViT,
    SamViTConfig,
)
from ood_perception.models.sam.mask_decoder import MaskDecoder
from ood_perception.models.sam.prompt_encoder import PromptEncoder
from ood_perception.models.sam.tiny_vit import MOBILE_SAM, TinyViT, TinyViTConfig
from ood_perception.models.sam.transformer import TwoWayTransformer

# SAM normalises 0-255 RGB with the ImageNet statistics (`Sam.pixel_mean` / `pixel_std`).
SAM_MEAN_255 = IMAGENET_MEAN_255
SAM_STD_255 = IMAGENET_STD_255
PROMPT_EMBED_DIM = 256


@dataclass(frozen=True)
class SamConfig:
    """One SAM variant: its image encoder's settings; the prompt side is SAM's own."""

    encoder: SamViTConfig | TinyViTConfig = VIT_B
    # Two-way transformer of the mask decoder (segment-anything `_build_sam`).
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048

    @property
    def img_size(self) -> int:
        return self.encoder.img_size

    @property
    def grid(self) -> int:
        return self.encoder.grid


# Model name -> variant (segment-anything ViT-B/L/H, MobileSAM).
SAM_VARIANTS: dict[str, SamConfig] = dict(zip(
    MODEL_NAMES, (SamConfig(VIT_B), SamConfig(VIT_L), SamConfig(VIT_H), SamConfig(MOBILE_SAM)),
    strict=True))


class Sam(nn.Module):
    """The three SAM parts; the deploy wrappers in `deploy.py` say how a frame goes through."""

    def __init__(self, cfg: SamConfig = SAM_VARIANTS["sam-vit-b"]):
        super().__init__()
        self.cfg = cfg
        if isinstance(cfg.encoder, TinyViTConfig):
            self.image_encoder: nn.Module = TinyViT(cfg.encoder)
        else:
            self.image_encoder = ImageEncoderViT(cfg.encoder)
        self.prompt_encoder = PromptEncoder(PROMPT_EMBED_DIM, (cfg.grid, cfg.grid),
                                            (cfg.img_size, cfg.img_size))
        self.mask_decoder = MaskDecoder(PROMPT_EMBED_DIM, TwoWayTransformer(
            cfg.decoder_depth, PROMPT_EMBED_DIM, cfg.decoder_heads, cfg.decoder_mlp_dim))


def sam_config(name: str) -> SamConfig:
    """The variant of a model name, or a ConfigurationError listing the names."""
    if name not in SAM_VARIANTS:
        raise ConfigurationError(f"unknown SAM model {name!r}; known: {', '.join(SAM_VARIANTS)}")
    return SAM_VARIANTS[name]


def resized_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) of a frame scaled so its longer side is `long_side` (segment-anything's
    `ResizeLongestSide.get_preprocess_shape`, rounding half up)."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def boxes_to_sam(boxes: torch.Tensor, frame_size: tuple[int, int],
                 resized: tuple[int, int]) -> torch.Tensor:
    """[N, 4] x0, y0, x1, y1 in frame pixels -> SAM's input frame, where the frame fills
    `resized` (h, w) (segment-anything `ResizeLongestSide.apply_boxes_torch`)."""
    height, width = frame_size
    scale = torch.tensor([resized[1] / width, resized[0] / height] * 2, dtype=torch.float32,
                         device=boxes.device)
    return boxes.to(torch.float32) * scale
