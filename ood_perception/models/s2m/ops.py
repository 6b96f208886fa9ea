"""The detector's two data-dependent operations as torch custom ops, so it exports to ONNX.

Eagerly they run the torch code of `nms.py` and `roi_align.py` (torchvision's semantics); the
S2M exporter maps them onto ONNX `NonMaxSuppression` (per-class, which keeps groups apart) and
`RoiAlign` (half-pixel, adaptive sampling), as torchvision's own ops export.
"""

from __future__ import annotations

import torch

from ood_perception.models.s2m.nms import batched_nms
from ood_perception.models.s2m.roi_align import roi_align as roi_align_one_image


@torch.library.custom_op("ood_perception::nms", mutates_args=())
def nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, num_groups: int,
        iou_threshold: float, score_threshold: float) -> torch.Tensor:
    """Indices [K] of the boxes [N, 4] kept by greedy NMS within each group (ids < num_groups)
    among those scoring above `score_threshold`, in descending score."""
    candidates = torch.nonzero(scores > score_threshold)[:, 0]
    keep = batched_nms(boxes[candidates], scores[candidates], groups[candidates], iou_threshold)
    return candidates[keep]


@nms.register_fake
def _(boxes, scores, groups, num_groups, iou_threshold, score_threshold):
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((count,), dtype=torch.int64)


@torch.library.custom_op("ood_perception::roi_align", mutates_args=())
def roi_align(features: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor,
              output_size: int, spatial_scale: float) -> torch.Tensor:
    """ROIAlignV2 of boxes [R, 4] on the images `batch_index` [R] of features [B, C, H, W]
    -> [R, C, output_size, output_size]."""
    out = features.new_zeros((boxes.shape[0], features.shape[1], output_size, output_size))
    for image in range(features.shape[0]):
        chosen = torch.nonzero(batch_index == image)[:, 0]
        if chosen.numel():
            out[chosen] = roi_align_one_image(features[image], boxes[chosen], output_size,
                                              spatial_scale)
    return out


@roi_align.register_fake
def _(features, boxes, batch_index, output_size, spatial_scale):
    return features.new_empty((boxes.shape[0], features.shape[1], output_size, output_size))
