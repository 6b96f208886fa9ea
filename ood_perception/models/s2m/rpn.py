"""detectron2's region proposal network at inference (`RPN`, `StandardRPNHead`,
`DefaultAnchorGenerator`, `find_top_rpn_proposals`), under detectron2's names.

Per FPN level: a shared 3x3 convolution, per-anchor objectness logits and box deltas; the
`pre_nms_topk` best anchors of each level are decoded, clipped to the image, empty boxes
dropped, suppressed per level (NMS), and the `post_nms_topk` best kept per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ood_perception.models.s2m import ops
from ood_perception.models.s2m.box_ops import apply_deltas, clip_boxes, nonempty

# RPN.BBOX_REG_WEIGHTS
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def cell_anchors(size: float, aspect_ratios: tuple[float, ...]) -> torch.Tensor:
    """[A, 4] anchors centred on (0, 0): area size**2, height / width = aspect ratio."""
    anchors = []
    for ratio in aspect_ratios:
        w = math.sqrt(size ** 2.0 / ratio)
        h = ratio * w
        anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors).float()


def grid_anchors(base: torch.Tensor, grid: tuple[int, int], stride: int,
                 offset: float) -> torch.Tensor:
    """[H * W * A, 4] anchors of a feature map: every location (row-major) x every cell."""
    height, width = grid
    shifts_x = torch.arange(offset * stride, width * stride, step=stride, dtype=torch.float32,
                            device=base.device)
    shifts_y = torch.arange(offset * stride, height * stride, step=stride, dtype=torch.float32,
                            device=base.device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)


class StandardRPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 `objectness_logits` (A) and `anchor_deltas` (A * 4)."""

    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, features: list[torch.Tensor]):
        """-> logits [B, Hi*Wi*A] and deltas [B, Hi*Wi*A, 4] per level."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.objectness_logits(t).permute(0, 2, 3, 1).flatten(1))
            d = self.anchor_deltas(t)
            deltas.append(d.view(d.shape[0], -1, 4, d.shape[-2], d.shape[-1])
                          .permute(0, 3, 4, 1, 2).flatten(1, -2))
        return logits, deltas


class RPN(nn.Module):
    """`proposal_generator`: FPN features -> proposal boxes [Ri, 4] per image, best first."""

    def __init__(self, channels: int, sizes: tuple[float, ...], aspect_ratios: tuple[float, ...],
                 strides: tuple[int, ...], offset: float, nms_thresh: float, pre_nms_topk: int,
                 post_nms_topk: int, min_box_size: float):
        super().__init__()
        self.rpn_head = StandardRPNHead(channels, len(aspect_ratios))
        self.cells = [cell_anchors(size, aspect_ratios) for size in sizes]
        self.strides = strides
        self.offset = offset
        self.nms_thresh = nms_thresh
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.min_box_size = min_box_size

    def forward(self, features: list[torch.Tensor],
                image_sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        logits, deltas = self.rpn_head(features)
        scores, proposals, levels = [], [], []
        for level, (level_logits, level_deltas, feature) in enumerate(
                zip(logits, deltas, features, strict=True)):
            anchors = grid_anchors(self.cells[level].to(feature.device), feature.shape[-2:],
                                   self.strides[level], self.offset)
            count = min(level_logits.shape[1], self.pre_nms_topk)
            top, index = level_logits.topk(count, dim=1)
            batch = torch.arange(level_logits.shape[0], device=feature.device)[:, None]
            boxes = apply_deltas(level_deltas[batch, index].reshape(-1, 4),
                                 anchors[index.reshape(-1)], RPN_BOX_WEIGHTS)
            proposals.append(boxes.view(level_logits.shape[0], count, 4))
            scores.append(top)
            levels.append(torch.full((count,), level, dtype=torch.int64, device=feature.device))
        scores, proposals, levels = (torch.cat(scores, 1), torch.cat(proposals, 1),
                                     torch.cat(levels))
        results = []
        for image, size in enumerate(image_sizes):
            boxes = proposals[image]
            valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores[image])
            boxes = clip_boxes(torch.where(valid[:, None], boxes, 0.0), size)
            # Non-finite and empty proposals drop out of NMS with a score of -inf.
            valid = valid & nonempty(boxes, self.min_box_size)
            image_scores = torch.where(valid, scores[image], float("-inf"))
            keep = ops.nms(boxes, image_scores, levels, len(features), self.nms_thresh,
                           torch.finfo(torch.float32).min)
            results.append(boxes[keep[: self.post_nms_topk]])
        return results
