"""S2M's prompt generator: detectron2's Faster R-CNN R50-FPN run on an anomaly score map.

The official code (WenjieZhao1/S2M, `configs/OE/OE.yaml` over detectron2's
`faster_rcnn_R_50_FPN_3x`) feeds the score copied to three channels at native resolution:
detectron2's pixel mean subtracted, std 1, zero-padded bottom and right to a multiple of 32.
Two classes; every detection above 0.05 after NMS (at most 100) becomes a box prompt with its
score as confidence. `backbone`, `proposal_generator` and `roi_heads` are detectron2's names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.backbones.resnet import ResNetConfig
from ood_perception.models.s2m.fpn import FPN, STRIDES
from ood_perception.models.s2m.roi_heads import StandardROIHeads
from ood_perception.models.s2m.rpn import RPN


@dataclass(frozen=True)
class DetectorConfig:
    """The official detector's settings (detectron2 defaults where S2M's config is silent)."""

    resnet: ResNetConfig = field(default_factory=ResNetConfig)  # R-50, MSRA stride_in_1x1
    fpn_channels: int = 256
    num_classes: int = 2  # ROI_HEADS.NUM_CLASSES; class 0 is "anomaly"
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_offset: float = 0.0
    rpn_nms_thresh: float = 0.7
    pre_nms_topk: int = 1000  # per FPN level, at test time
    post_nms_topk: int = 1000
    rpn_min_box_size: float = 0.0
    pooler_resolution: int = 7
    fc_dim: int = 1024
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    # MODEL.PIXEL_MEAN / PIXEL_STD of the official config (BGR order, 0-255 scale).
    pixel_mean: tuple[float, float, float] = (103.53, 116.28, 123.675)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size_divisibility: int = 32


@dataclass(frozen=True)
class Detections:
    """One frame's detections, best first, in the score map's pixel coordinates."""

    boxes: torch.Tensor  # float32 [D, 4] x0, y0, x1, y1
    scores: torch.Tensor  # float32 [D] in (score_thresh, 1]
    classes: torch.Tensor  # int64 [D]


class ScoreBoxDetector(nn.Module):
    """Anomaly score maps -> box prompts (detectron2 `GeneralizedRCNN.inference`)."""

    def __init__(self, cfg: DetectorConfig = DetectorConfig()):
        super().__init__()
        self.cfg = cfg
        self.backbone = FPN(cfg.resnet, cfg.fpn_channels)
        self.proposal_generator = RPN(
            cfg.fpn_channels, cfg.anchor_sizes, cfg.aspect_ratios, STRIDES, cfg.anchor_offset,
            cfg.rpn_nms_thresh, cfg.pre_nms_topk, cfg.post_nms_topk, cfg.rpn_min_box_size)
        self.roi_heads = StandardROIHeads(
            cfg.fpn_channels, STRIDES[:4], cfg.pooler_resolution, cfg.fc_dim, cfg.num_classes,
            cfg.box_weights, cfg.score_thresh, cfg.nms_thresh, cfg.detections_per_image)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(-1, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(-1, 1, 1),
                             persistent=False)

    def prepare(self, scores: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Score maps [H, W] -> the padded, normalised batch [B, 3, H', W'] and the sizes."""
        sizes = [tuple(score.shape[-2:]) for score in scores]
        step = self.cfg.size_divisibility
        height = -(-max(h for h, _ in sizes) // step) * step
        width = -(-max(w for _, w in sizes) // step) * step
        images = []
        for score in scores:
            image = (score.float().unsqueeze(0).expand(3, -1, -1) - self.pixel_mean)
            image = image / self.pixel_std
            images.append(F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2])))
        return torch.stack(images), sizes

    def forward(self, scores: list[torch.Tensor]) -> list[Detections]:
        images, sizes = self.prepare(scores)
        features = self.backbone(images)
        proposals = self.proposal_generator(features, sizes)
        return [Detections(*found) for found in self.roi_heads(features[:4], proposals, sizes)]


class ScoreBoxDetectorDeploy(nn.Module):
    """The exportable graph: score float32 [1, H, W] (the frame's anomaly score, as the
    detector was trained on it) -> boxes [D, 4], scores [D], classes int64 [D]."""

    def __init__(self, detector: ScoreBoxDetector):
        super().__init__()
        self.detector = detector

    def forward(self, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.detector([score[0]])[0]
        return found.boxes, found.scores, found.classes
