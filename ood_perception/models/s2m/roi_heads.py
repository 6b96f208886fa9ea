"""detectron2's box head at inference (`StandardROIHeads` with `FastRCNNConvFCHead` and
`FastRCNNOutputLayers`), under detectron2's names.

Proposals are pooled (ROIAlignV2, 7x7) from p2..p5, flattened through `box_head.fc1`/`fc2`
(ReLU), and `box_predictor` gives class scores (softmax, last = background) and per-class
deltas; boxes scoring above `score_thresh` are clipped, suppressed per class and the
`detections_per_image` best kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.s2m.box_ops import apply_deltas, clip_boxes
from ood_perception.models.s2m.nms import batched_nms
from ood_perception.models.s2m.roi_align import ROIPooler


class FastRCNNConvFCHead(nn.Module):
    """Pooled [R, C, 7, 7] -> flattened -> fc1 -> ReLU -> fc2 -> ReLU: [R, fc_dim]."""

    def __init__(self, in_features: int, fc_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class FastRCNNOutputLayers(nn.Module):
    """`cls_score` (K + 1, background last) and class-specific `bbox_pred` (K * 4)."""

    def __init__(self, fc_dim: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def fast_rcnn_inference(boxes: torch.Tensor, probs: torch.Tensor, size: tuple[int, int],
                        score_thresh: float, nms_thresh: float,
                        topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image: per-class boxes [R, K*4], probabilities [R, K+1] -> (boxes [D, 4], scores
    [D], classes [D]), best first (`fast_rcnn_inference_single_image`)."""
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(probs).all(dim=1)
    boxes, probs = boxes[valid], probs[valid]
    scores = probs[:, :-1]
    classes = boxes.shape[1] // 4
    boxes = clip_boxes(boxes.reshape(-1, 4), size).view(-1, classes, 4)
    chosen = scores > score_thresh
    index = torch.nonzero(chosen)
    boxes = boxes[index[:, 0], 0] if classes == 1 else boxes[chosen]
    scores = scores[chosen]
    keep = batched_nms(boxes, scores, index[:, 1], nms_thresh)
    if topk >= 0:
        keep = keep[:topk]
    return boxes[keep], scores[keep], index[keep, 1]


class StandardROIHeads(nn.Module):
    """`roi_heads`: FPN features + proposals -> detections per image."""

    def __init__(self, channels: int, strides: tuple[int, ...], pooler_resolution: int,
                 fc_dim: int, num_classes: int, box_weights: tuple[float, float, float, float],
                 score_thresh: float, nms_thresh: float, detections_per_image: int):
        super().__init__()
        self.box_pooler = ROIPooler(pooler_resolution, strides)
        self.box_head = FastRCNNConvFCHead(channels * pooler_resolution ** 2, fc_dim)
        self.box_predictor = FastRCNNOutputLayers(fc_dim, num_classes)
        self.box_weights = box_weights
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image

    def forward(self, features: list[torch.Tensor], proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, ...]]:
        pooled = self.box_pooler(features, proposals)
        logits, deltas = self.box_predictor(self.box_head(pooled))
        boxes = apply_deltas(deltas, torch.cat(proposals), self.box_weights)
        probs = F.softmax(logits, dim=-1)
        counts = [len(p) for p in proposals]
        return [fast_rcnn_inference(b, p, size, self.score_thresh, self.nms_thresh,
                                    self.detections_per_image)
                for b, p, size in zip(boxes.split(counts), probs.split(counts), image_sizes,
                                      strict=True)]
