"""Mask2Former (Swin backbone) with the UNO / EAM / RbA scores, and its registry builders.

The network takes normalised RGB [B, 3, H, W] (DeployModel applies detectron2's mean/std),
pads it with zeros at bottom/right to a multiple of 32 as `ImageList.from_tensors` does, and
follows the official output chain: mask logits at 1/4 of the padded size, bilinear
(align_corners=False) to the padded size, crop, sigmoid. Parameter names are detectron2's
(`backbone.*`, `sem_seg_head.pixel_decoder.*`, `sem_seg_head.predictor.*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..contract import CITYSCAPES_CLASSES, IMAGENET_MEAN_255, IMAGENET_STD_255, ModelInfo
from ..errors import CheckpointError, ConfigurationError
from ..export import DeployModel
from .m2f_checkpoints import decoder_layers, head_sizes, load_m2f_state, load_strict
from .m2f_pixel_decoder import MSDeformAttnPixelDecoder, PixelDecoderConfig
from .m2f_scores import M2F_SCORES, SCORE_RANGES, check_score, semantic_map
from .m2f_transformer_decoder import DecoderConfig, MultiScaleMaskedTransformerDecoder
from .registry import ExportRequest
from .swin import SWIN_B, SWIN_L, SWIN_T, SwinConfig, SwinTransformer

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

    swin: SwinConfig = SWIN_L
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
            in_channels=self.swin.channels, conv_dim=self.conv_dim,
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
        self.backbone = SwinTransformer(cfg.swin)
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


class Mask2FormerScored(nn.Module):
    """normalised [B, 3, H, W] -> (score float32 [B, H, W], classes int64 [B, H, W])."""

    def __init__(self, model: Mask2Former, score: str, known: int = KNOWN_CLASSES):
        super().__init__()
        check_score(score, model.cfg.decoder.num_classes + 1, known)
        self.model = model
        self.score = score
        self.known = known

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, masks = self.model(x)
        probs = logits.softmax(-1)
        masks = masks.sigmoid()
        score = M2F_SCORES[self.score](probs, masks, self.known)
        classes = semantic_map(probs, masks, self.known).argmax(1)
        return score, classes


def _check_request(request: ExportRequest) -> None:
    unused = [flag for flag, value in (
        ("--segmentor-checkpoint", request.segmentor_checkpoint),
        ("--window", request.window), ("--stride", request.stride)) if value is not None]
    if unused:
        raise ConfigurationError(f"{', '.join(unused)} do not apply to Mask2Former models "
                                 "(one pass over the whole frame)")
    if request.random_init == bool(request.checkpoint):
        raise ConfigurationError("Mask2Former export needs exactly one of --checkpoint "
                                 "(detectron2 .pth or .pkl) and --random-init")
    if request.variant is not None and request.variant not in VARIANT_OUTPUTS:
        raise ConfigurationError(f"Mask2Former variant must be one of "
                                 f"{', '.join(VARIANT_OUTPUTS)}, got {request.variant!r}")
    if min(request.input_size) <= 0:
        raise ConfigurationError(f"input size must be positive, got {request.input_size}")


def build_mask2former(request: ExportRequest, swin: SwinConfig) -> DeployModel:
    """Shared builder: the class head (K+1 or K+2) and queries come from the checkpoint.

    Random init: the `variant` head ("uno" default) with 100 queries, seeded.
    """
    _check_request(request)
    score = request.score or DEFAULT_SCORE
    if request.random_init:
        variant = request.variant or "uno"
        outputs, state = VARIANT_OUTPUTS[variant], None
        queries = DEFAULT_DECODER.num_queries if request.queries is None else request.queries
        layers = (DEFAULT_DECODER.layers if request.decoder_layers is None
                  else request.decoder_layers)
    else:
        state = load_m2f_state(request.checkpoint)
        outputs, queries = head_sizes(state, request.checkpoint)
        layers = decoder_layers(state)
        for name, asked, found in (("decoder layers", request.decoder_layers, layers),
                                   ("queries", request.queries, queries)):
            if asked not in (None, found):
                raise ConfigurationError(f"{request.checkpoint} has {found} {name}, not {asked}")
        variant = {v: k for k, v in VARIANT_OUTPUTS.items()}.get(outputs)
        if variant is None:
            raise CheckpointError(f"{request.checkpoint} has {outputs} class outputs; a "
                                  f"Cityscapes model has {KNOWN_CLASSES + 1} (K + no-object) or "
                                  f"{KNOWN_CLASSES + 2} (K + negative + no-object)")
        if request.variant is not None and request.variant != variant:
            raise ConfigurationError(f"{request.checkpoint} has {outputs} class outputs, not the "
                                     f"{request.variant!r} head; leave the variant out")
    check_score(score, outputs, KNOWN_CLASSES)
    if layers < 1 or queries < 1:
        raise ConfigurationError(f"Mask2Former needs at least one decoder layer and one query, "
                                 f"got {layers} and {queries}")
    cfg = Mask2FormerConfig(swin=swin, decoder=DecoderConfig(
        num_classes=outputs - 1, num_queries=queries, layers=layers))
    torch.manual_seed(request.seed)
    model = Mask2Former(cfg)
    if state is not None:
        load_strict(model, state, request.checkpoint)
    height, width = request.input_size
    info = ModelInfo(
        input_height=height, input_width=width, model_name=request.model, score_name=score,
        class_names=CITYSCAPES_CLASSES, mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255,
        tiling={"mode": "single"}, score_range=SCORE_RANGES[score],
        producer=f"ood_perception {__version__}")
    deploy = DeployModel(Mask2FormerScored(model.eval(), score), info).eval()
    # The head and decoder depth a `.pt` deploy file must rebuild (random init, then its
    # state dict).
    deploy.variant = variant
    deploy.decoder_layers = layers
    deploy.queries = queries
    return deploy


def build_uno_m2f_swin_l(request: ExportRequest) -> DeployModel:
    """Swin-L (window 12): the official UNO / EAM checkpoints (Open-set-M2F)."""
    return build_mask2former(request, SWIN_L)


def build_uno_m2f_swin_b(request: ExportRequest) -> DeployModel:
    """Swin-B (window 12): Mask2Former model-zoo Cityscapes checkpoint (K+1, EAM/RbA scores)."""
    return build_mask2former(request, SWIN_B)


def build_uno_m2f_swin_t(request: ExportRequest) -> DeployModel:
    """Swin-T (window 7): Mask2Former model-zoo Cityscapes checkpoint (K+1, EAM/RbA scores)."""
    return build_mask2former(request, SWIN_T)
