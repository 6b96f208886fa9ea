"""Camera intrinsics of a resized image: the `camera_info` that goes with a map published at
the model's resolution instead of the camera's.

The resize aligns pixel centres (OpenCV's convention, used by every resize here), so a pixel
coordinate u becomes (u + 0.5) * s - 0.5 (u - left first, for a window at `left`).
image_proc's resize scales cx and cy by s alone, which puts them (1 - s) / 2 pixels off for
such a resize (0.26 px for 1080p -> 518x924).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ood_perception.core.placement import Box
from ood_perception.errors import ConfigurationError


def scale_intrinsics(k: Sequence[float], p: Sequence[float], frame_size: tuple[int, int],
                     size: tuple[int, int], window: Box | None = None
                     ) -> tuple[list[float], list[float]]:
    """K (3x3, 9 values row-major) and P (3x4, 12 values) of a `frame_size` (height, width)
    image -> K and P of the resize of its `window` (default: all of it) to `size`; D and R
    do not change. A crop's window shifts the principal point by its corner first."""
    if len(k) != 9 or len(p) != 12:
        raise ConfigurationError(f"K needs 9 values and P 12, got {len(k)} and {len(p)}")
    if min(*frame_size, *size) <= 0:
        raise ConfigurationError(f"image sizes must be positive, got {frame_size} -> {size}")
    window = window or Box(0, 0, *frame_size)
    scale_x, scale_y = size[1] / window.width, size[0] / window.height
    pixels = np.array([[scale_x, 0.0, (0.5 - window.left) * scale_x - 0.5],
                       [0.0, scale_y, (0.5 - window.top) * scale_y - 0.5],
                       [0.0, 0.0, 1.0]])
    scaled_k = pixels @ np.asarray(k, np.float64).reshape(3, 3)
    scaled_p = pixels @ np.asarray(p, np.float64).reshape(3, 4)
    return scaled_k.ravel().tolist(), scaled_p.ravel().tolist()
