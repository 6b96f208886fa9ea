"""The obstacle mask on the backend's GPU: threshold and class gating on the device, and only
the window holding the anomalous pixels comes down to the host."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ood_perception.core.gpu_preprocess import to_host
from ood_perception.core.postprocess import PostprocessConfig


def anomalous(score: torch.Tensor, semantic: torch.Tensor | None,
              config: PostprocessConfig) -> torch.Tensor:
    """`postprocess.anomalous` on the device: float32 [H, W] score (+ uint8 [H, W] classes)
    -> bool [H, W]; the gating region grows as OpenCV's dilation with a square kernel (a
    separable max that never reaches past the frame's edges)."""
    binary = score > config.score_threshold
    if not config.gating_classes or semantic is None:
        return binary
    lut = torch.zeros(256, dtype=torch.bool, device=score.device)
    lut[list(config.gating_classes)] = True
    region = lut[semantic.long()]
    grow = config.gating_dilation
    if grow > 0:
        grown = region[None, None].float()
        grown = F.max_pool2d(grown, (2 * grow + 1, 1), stride=1, padding=(grow, 0))
        grown = F.max_pool2d(grown, (1, 2 * grow + 1), stride=1, padding=(0, grow))
        region = grown[0, 0] > 0
    return binary & region


def anomalous_window(binary: torch.Tensor, score: torch.Tensor
                     ) -> tuple[tuple[int, int], np.ndarray, np.ndarray] | None:
    """bool [H, W] anomalous pixels and the float32 [H, W] score -> ((top, left), uint8 0/1
    window, score window) over the smallest box holding every anomalous pixel, or None.

    Only the row and column flags and the two windows come to the host (the flags wait for
    the device; read the windows after `synchronize`).
    """
    rows = np.flatnonzero(binary.any(dim=1).cpu().numpy())
    if rows.size == 0:
        return None
    cols = np.flatnonzero(binary.any(dim=0).cpu().numpy())
    box = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    return ((box[0].start, box[1].start), to_host(binary[box].to(torch.uint8)),
            to_host(score[box]))
