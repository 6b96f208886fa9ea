"""Host-side resize to the model input size and back.

Frames of any size become one contiguous uint8 [B, H, W, 3] batch; the model's maps go
back to each frame's own size (scores bilinear, class ids nearest so no class is invented).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ood_perception.errors import ConfigurationError


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> size (height, width); INTER_AREA to shrink, INTER_LINEAR to enlarge."""
    height, width = size
    if frame.shape[:2] == (height, width):
        return frame
    shrinking = height * width < frame.shape[0] * frame.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interpolation)


def make_batch(frames: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 frames of any sizes -> contiguous uint8 [B, H, W, 3] at `size`."""
    if not frames:
        raise ConfigurationError("make_batch needs at least one frame")
    batch = np.empty((len(frames), *size, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ConfigurationError(
                f"frame {index}: expected HxWx3 uint8 RGB, got {frame.dtype} {frame.shape}")
        batch[index] = resize_frame(frame, size)
    return batch


def resize_score(score: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 HxW score map -> `size` (height, width), bilinear."""
    height, width = size
    score = np.asarray(score, dtype=np.float32)
    if score.shape == (height, width):
        return score
    return cv2.resize(score, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_classes(classes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 HxW class ids -> `size` (height, width), nearest neighbour."""
    height, width = size
    if classes.shape == (height, width):
        return classes
    return cv2.resize(classes, (width, height), interpolation=cv2.INTER_NEAREST)
