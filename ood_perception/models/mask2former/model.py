"""Mask2Former (Swin or ResNet backbone) with the UNO / EAM / RbA scores.

The network takes normalised RGB [B, 3, H, W] (DeployModel applies detectron2's mean/std),
pads it with zeros at bottom/right to a multiple of 32 as `ImageList.from_tensors` does, and
follows the official output chain: mask logits at 1/4 of the padded size, bilinear
(align_corners=False) to the padded size, crop, then (`sem_seg_postprocess`) bilinear to the
frame's own size, sigmoid. Parameter names are detectron2's (`backbone.*`,
`sem_seg_head.pixel_decoder.*`, `sem_seg_head.predictor.*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.contract import CITYSCAPES_CLASSES
from ood_perception.errors import ConfigurationError
from ood_perception.models.backbones.resnet import ResNet, ResNetConfig
from ood_perception.models.backbones.swin import (
    SWIN_L,
    SwinConfig,
    SwinTransformer,
)
from ood_perception.models.mask2former.pixel_decoder import (
    MSDeformAttnPixelDecoder,
    PixelDecoderConfig,
)
from ood_perception.models.mask2former.scores import (
    M2F_SCORES,
    check_score,
    semantic_map,
)
from ood_perception.models.mask2former.transformer_decoder import (
    DecoderConfig,
    MultiScaleMaskedTransformerDecoder,
)

KNOWN_CLASSES = len(CITYSCAPES_CLASSES)
DEFAULT_SCORE = "uno"
# Class heads: "uno" = K known + negative + no-object (Open-set-M2F UNO), "closed" = K +
# no-object (Mask2Former model zoo, EAM). A checkpoint's own head wins; None = from the file.
VARIANT_OUTPUTS = {"uno": KNOWN_CLASSES + 2, "closed": KNOWN_CLASSES + 1}
# UNO head: K known + negative + no-object outputs, 100 queries.
DEFAULT_DECODER = DecoderConfig(num_classes=KNOWN_CLASSES + 1)


@dataclass(frozen=True)
class Mask2FormerConfig:
    """One Mask2Former; defaults are the official Cityscapes semantic-segmentation config."""

    # D2SwinTransformer or detectron2's build_resnet_backbone (MODEL.BACKBONE.NAME).
    backbone: SwinConfig | ResNetConfig = SWIN_L
    decoder: DecoderConfig = DEFAULT_DECODER
    # Pixel decoder (MODEL.SEM_SEG_HEAD): conv / mask dims, deformable encoder.
    conv_dim: int = 256
    enc_layers: int = 6
    enc_heads: int = 8
    enc_points: int = 4
    enc_ffn_dim: int = 1024
    # MODEL.MASK_FORMER.SIZE_DIVISIBILITY: zero padding at bottom / right.
    size_divisibility: int = 32

    @property
    def pixel_decoder(self) -> PixelDecoderConfig:
        return PixelDecoderConfig(
            in_channels=self.backbone.channels, conv_dim=self.conv_dim,
            mask_dim=self.decoder.mask_dim, heads=self.enc_heads, points=self.enc_points,
            enc_layers=self.enc_layers, ffn_dim=self.enc_ffn_dim)


class SemSegHead(nn.Module):
    """`MaskFormerHead`: pixel decoder, then the transformer decoder (`predictor`)."""

    def __init__(self, cfg: Mask2FormerConfig):
        super().__init__()
        self.pixel_decoder = MSDeformAttnPixelDecoder(cfg.pixel_decoder)
        self.predictor = MultiScaleMaskedTransformerDecoder(cfg.decoder)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mask_features, multi_scale = self.pixel_decoder(features)
        return self.predictor(multi_scale, mask_features)


class Mask2Former(nn.Module):
    """normalised [B, 3, H, W] -> (class logits [B, Q, C+1], mask logits [B, Q, H, W])."""

    def __init__(self, cfg: Mask2FormerConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = (ResNet(cfg.backbone) if isinstance(cfg.backbone, ResNetConfig)
                         else SwinTransformer(cfg.backbone))
        self.sem_seg_head = SemSegHead(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = (int(s) for s in x.shape[-2:])
        div = self.cfg.size_divisibility
        pad_b, pad_r = -height % div, -width % div
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        logits, masks = self.sem_seg_head(self.backbone(x))
        masks = F.interpolate(masks, size=(height + pad_b, width + pad_r), mode="bilinear",
                              align_corners=False)
        return logits, masks[:, :, :height, :width]


# What a graph resizes from the network's size to the frame's: "masks", the official
# `sem_seg_postprocess` order (every query's mask logits, then sigmoid and score), or "score"
# (score and class map at the network size, then resized: no per-query maps at frame size).
RESIZE_BACK = ("masks", "score")


class Mask2FormerScored(nn.Module):
    """normalised [B, 3, h, w] at the network size -> (score float32 [B, H, W], classes int64
    [B, H, W]) at `output_size` [H, W] (None = the network size)."""

    def __init__(self, model: Mask2Former, score: str, known: int = KNOWN_CLASSES,
                 output_size: tuple[int, int] | None = None, resize_back: str = "masks"):
        super().__init__()
        check_score(score, model.cfg.decoder.num_classes + 1, known)
        if resize_back not in RESIZE_BACK:
            raise ConfigurationError(f"resize_back must be one of {', '.join(RESIZE_BACK)}, "
                                     f"got {resize_back!r}")
        self.model = model
        self.score = score
        self.known = known
        self.output_size = None if output_size is None else tuple(output_size)
        self.resize_back = resize_back

    def _resized(self, maps: torch.Tensor) -> bool:
        return self.output_size is not None and tuple(maps.shape[-2:]) != self.output_size

    def _to_output(self, maps: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, C, H, W], bilinear (align_corners=False) as sem_seg_postprocess."""
        if not self._resized(maps):
            return maps
        return F.interpolate(maps, size=self.output_size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, masks = self.model(x)
        probs = logits.softmax(-1)
        mask_probs = masks.sigmoid()
        # sem_seg is computed at the network size, then resized (MaskFormer.forward).
        classes = self._to_output(semantic_map(probs, mask_probs, self.known)).argmax(1)
        score_fn = M2F_SCORES[self.score]
        if self.resize_back == "masks" and self._resized(masks):
            score = score_fn(probs, self._to_output(masks).sigmoid(), self.known)
        else:
            score = self._to_output(score_fn(probs, mask_probs, self.known)[:, None])[:, 0]
        return score, classes
