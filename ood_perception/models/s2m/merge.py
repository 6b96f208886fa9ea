"""The official S2M merge: SAM masks and their boxes' confidences -> one map in [0, 1].

WenjieZhao1/S2M (`tools/inference.py`) starts from zeros and walks the boxes in descending
confidence, writing each box's confidence over its mask's pixels: where masks overlap the
lowest confidence stays (the S2M paper, section 6.2), and 0 means no object.
"""

from __future__ import annotations

import torch


def merge_masks(masks: torch.Tensor, confidences: torch.Tensor) -> torch.Tensor:
    """bool masks [N, H, W] + confidences [N] in [0, 1] -> float32 map [H, W]."""
    merged = torch.zeros(masks.shape[1:], dtype=torch.float32, device=masks.device)
    order = torch.argsort(confidences, descending=True, stable=True)
    for index in order.tolist():
        merged[masks[index]] = confidences[index].float()
    return merged
