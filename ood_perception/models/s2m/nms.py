"""Greedy non-maximum suppression as torchvision's `nms` / `batched_nms` compute it, in torch.

Boxes are visited in descending score; each kept box suppresses the later ones whose IoU with
it exceeds the threshold. Groups (FPN levels, classes) never suppress each other.
"""

from __future__ import annotations

import torch

from ood_perception.models.s2m.box_ops import pairwise_iou


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices [K] of the kept boxes, in descending score."""
    order = torch.argsort(scores, descending=True, stable=True)
    if order.numel() == 0:
        return order
    over = (pairwise_iou(boxes[order]) > iou_threshold).cpu()
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    kept = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= over[i]
    return order[torch.tensor(kept, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """`nms` within each group; indices [K] of all kept boxes in descending score."""
    kept = [torch.nonzero(groups == group)[:, 0] for group in torch.unique(groups).tolist()]
    kept = [index[nms(boxes[index], scores[index], iou_threshold)] for index in kept]
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep = torch.cat(kept)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]
