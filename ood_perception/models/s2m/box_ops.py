"""Box arithmetic of detectron2's inference path (`Box2BoxTransform`, `Boxes`), on [N, 4]
x0, y0, x1, y1 float tensors."""

from __future__ import annotations

import math

import torch

# detectron2 `_DEFAULT_SCALE_CLAMP`: keeps exp() of the width and height deltas finite.
SCALE_CLAMP = math.log(1000.0 / 16)


def apply_deltas(deltas: torch.Tensor, boxes: torch.Tensor,
                 weights: tuple[float, float, float, float]) -> torch.Tensor:
    """Deltas [N, k*4] (dx, dy, dw, dh per class) applied to boxes [N, 4] -> [N, k*4]."""
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=SCALE_CLAMP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=SCALE_CLAMP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    pred = torch.stack((pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h,
                        pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h), dim=-1)
    return pred.reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Coordinates limited to [0, width] and [0, height] of an image of `size` (h, w)."""
    height, width = size
    return torch.stack((boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                        boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)), dim=-1)


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """bool [N]: both sides longer than `threshold`."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """[N, N] intersection over union, areas without the +1 (torchvision's)."""
    area = box_area(boxes)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    return inter / (area[:, None] + area[None, :] - inter)
