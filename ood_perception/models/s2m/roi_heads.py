"""detectron2's box head at inference (`StandardROIHeads` with `FastRCNNConvFCHead` and
`FastRCNNOutputLayers`), under detectron2's names.

Proposals are pooled (ROIAlignV2, 7x7) from p2..p5, flattened through `box_head.fc1`/`fc2`
(ReLU), and `box_predictor` gives class scores (softmax, last = background) and per-class
deltas; boxes scoring above `score_thresh` are clipped, suppressed per class and the
`detections_per_image` best kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.s2m import ops
from ood_perception.models.s2m.box_ops import apply_deltas, clip_boxes, nonempty
from ood_perception.models.s2m.roi_align import assign_levels


class ROIPooler(nn.Module):
    """Multi-level ROIAlignV2 over FPN features p2..p5 (strides 4..32): each box pooled from
    the level its size picks."""

    def __init__(self, output_size: int, strides: tuple[int, ...],
                 canonical_box_size: int = 224, canonical_level: int = 4):
        super().__init__()
        self.output_size = output_size
        self.scales = tuple(1.0 / s for s in strides)
        self.min_level = int(math.log2(strides[0]))
        self.max_level = int(math.log2(strides[-1]))
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        """Features [B, C, Hl, Wl] per level, boxes [Ri, 4] per image -> [sum Ri, C, o, o]."""
        all_boxes = torch.cat(boxes)
        batch_index = torch.cat([torch.full_like(b[:, 0], i, dtype=torch.int64)
                                 for i, b in enumerate(boxes)])
        levels = assign_levels(all_boxes, self.min_level, self.max_level,
                               self.canonical_box_size, self.canonical_level)
        out = features[0].new_zeros((all_boxes.shape[0], features[0].shape[1],
                                     self.output_size, self.output_size))
        for level, scale in enumerate(self.scales):
            chosen = torch.nonzero(levels == level)[:, 0]
            out = out.index_put((chosen,), ops.roi_align(
                features[level], all_boxes[chosen], batch_index[chosen], self.output_size,
                scale))
        return out


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
    classes = probs.shape[1] - 1
    # Candidates: every (box, class) pair; invalid rows score -inf, below any threshold.
    scores = torch.where(valid[:, None], probs[:, :-1], float("-inf")).reshape(-1)
    boxes = torch.where(valid[:, None], boxes, 0.0).reshape(-1, boxes.shape[1] // 4, 4)
    boxes = clip_boxes(boxes.expand(-1, classes, -1).reshape(-1, 4), size)
    labels = torch.arange(classes, device=boxes.device).repeat(probs.shape[0])
    keep = ops.nms(boxes, scores, labels, classes, nms_thresh, score_thresh)
    if topk >= 0:
        keep = keep[:topk]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    kept = nonempty(boxes)  # detector_postprocess at the input's own size
    return boxes[kept], scores[kept], labels[kept]


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
        counts = [p.shape[0] for p in proposals]
        return [fast_rcnn_inference(b, p, size, self.score_thresh, self.nms_thresh,
                                    self.detections_per_image)
                for b, p, size in zip(boxes.split(counts), probs.split(counts), image_sizes,
                                      strict=True)]
