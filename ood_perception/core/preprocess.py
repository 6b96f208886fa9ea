"""Host-side resize to the model input size and back.

Frames of any size become one contiguous uint8 [B, H, W, 3] batch; the model's maps go
back to each frame's own size (scores bilinear, class ids nearest so no class is invented).
The maps can also be taken back over a window of the frame only (`score_window`,
`classes_window`): the obstacle mask needs the full-size score only near anomalous pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np

from ood_perception.core.frames import BgrFrame
from ood_perception.core.placement import UNSEEN_CLASS, Placement, placement
from ood_perception.errors import ConfigurationError


def _box_factor(source: int, target: int) -> int:
    """Largest whole k <= source / target that divides `source` (1 when there is none)."""
    factor = max(source // target, 1)
    while source % factor:
        factor -= 1
    return factor


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWxC uint8 -> `size` (height, width), antialiased where it shrinks.

    A shrink runs as a k x k box average by a whole factor (OpenCV's INTER_AREA fast path)
    and bilinear for what is left, a factor under 2: OpenCV's INTER_AREA at a non-whole
    factor (1080p -> 518x924) costs about 8x as much and differs from this on smooth content
    by under one grey level. Where no such split exists, plain INTER_AREA; enlarging is
    bilinear. Every step works per channel, so channel order may be changed after it.
    """
    height, width = size
    if frame.shape[:2] == (height, width):
        return frame
    rows, cols = frame.shape[:2]
    by_rows, by_cols = _box_factor(rows, height), _box_factor(cols, width)
    if rows // by_rows >= 2 * height or cols // by_cols >= 2 * width:
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    if by_rows > 1 or by_cols > 1:
        frame = cv2.resize(frame, (cols // by_cols, rows // by_rows),
                           interpolation=cv2.INTER_AREA)
        if frame.shape[:2] == (height, width):
            return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


def make_batch(frames: Sequence, size: tuple[int, int],
               resize_mode: str = "stretch") -> np.ndarray:
    """Frames of any sizes (RGB uint8 HxWx3 arrays or `frames.BgrFrame`) -> contiguous uint8
    [B, H, W, 3] RGB at `size`, each placed as `resize_mode` says (`core.placement`); BGR
    frames are resized first and converted after.

    Letterbox padding is zero (black): the models' own normalisation maps it to one constant
    value, like the unlit border of a camera, and no frame content is invented there.
    """
    if not frames:
        raise ConfigurationError("make_batch needs at least one frame")
    batch = np.empty((len(frames), *size, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        bgr = isinstance(frame, BgrFrame)
        pixels = frame.pixels if bgr else frame
        if not bgr and (frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8):
            raise ConfigurationError(
                f"frame {index}: expected HxWx3 uint8 RGB, got {frame.dtype} {frame.shape}")
        place = placement(resize_mode, pixels.shape[:2], tuple(size))
        if place.whole_frame and place.whole_model:
            if bgr:
                cv2.cvtColor(resize_frame(pixels, size), cv2.COLOR_BGR2RGB, dst=batch[index])
            else:
                batch[index] = resize_frame(pixels, size)
            continue
        frame_box, model_box = place.frame_box, place.model_box
        resized = resize_frame(np.ascontiguousarray(pixels[frame_box.rows, frame_box.cols]),
                               model_box.size)
        if not place.whole_model:
            batch[index] = 0
        batch[index, model_box.rows, model_box.cols] = (
            cv2.cvtColor(resized, cv2.COLOR_BGR2RGB) if bgr else resized)
    return batch


def outside_crop_score(score_range: tuple[float, float] | None) -> float:
    """The score of frame pixels the model never saw (outside a crop): the low end of the
    model's score range (nothing anomalous there), NaN when the graph declares none."""
    return float(score_range[0]) if score_range is not None else math.nan


def score_to_frame(score: np.ndarray, place: Placement, fill: float,
                   out: np.ndarray | None = None) -> np.ndarray:
    """float32 model map -> frame-size map: the letterbox padding dropped, the scored window
    resized back bilinearly, `fill` outside a crop; into `out` (float32 frame size) if given."""
    return _to_frame(score, place, fill, resize_score, np.float32, out)


def classes_to_frame(classes: np.ndarray, place: Placement,
                     out: np.ndarray | None = None) -> np.ndarray:
    """uint8 model class ids -> frame size as `score_to_frame` places scores, nearest;
    `placement.UNSEEN_CLASS` outside a crop."""
    return _to_frame(classes, place, UNSEEN_CLASS, resize_classes, np.uint8, out)


def _to_frame(model_map: np.ndarray, place: Placement, fill: float, resize, dtype,
              out: np.ndarray | None) -> np.ndarray:
    """The scored window of `model_map` resized back to its frame window, `fill` elsewhere."""
    valid = np.ascontiguousarray(model_map[place.model_box.rows, place.model_box.cols])
    if place.whole_frame:
        return resize(valid, place.frame_size, out=out)
    if out is None:
        out = np.empty(place.frame_size, dtype)
    out[...] = fill
    out[place.frame_box.rows, place.frame_box.cols] = resize(valid, place.frame_box.size)
    return out


def resize_score(score: np.ndarray, size: tuple[int, int],
                 out: np.ndarray | None = None) -> np.ndarray:
    """float32 HxW score map -> `size` (height, width), bilinear; written into `out` (float32
    `size`) when given, e.g. a message buffer."""
    height, width = size
    score = np.asarray(score, dtype=np.float32)
    if score.shape == (height, width):
        if out is None:
            return score
        out[...] = score
        return out
    return cv2.resize(score, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


def resize_classes(classes: np.ndarray, size: tuple[int, int],
                   out: np.ndarray | None = None) -> np.ndarray:
    """uint8 HxW class ids -> `size` (height, width), nearest neighbour; into `out` if given."""
    height, width = size
    if classes.shape == (height, width):
        if out is None:
            return classes
        out[...] = classes
        return out
    return cv2.resize(classes, (width, height), dst=out, interpolation=cv2.INTER_NEAREST)


@functools.lru_cache(maxsize=64)
def nearest_sources(source: int, target: int) -> np.ndarray:
    """OpenCV's INTER_NEAREST source index per target index: floor(i * (1 / (target /
    source))) in double precision, as its resize.cpp computes it (read-only int64)."""
    index = np.floor(np.arange(target, dtype=np.float64) * (1.0 / (target / source)))
    index = np.minimum(index.astype(np.int64), source - 1)
    index.flags.writeable = False
    return index


@functools.lru_cache(maxsize=64)
def bilinear_taps(source: int, target: int) -> tuple[np.ndarray, ...]:
    """Per target index: the two source indices and their float64 weights of a bilinear
    resize with pixel centres aligned (align_corners=False, edges clamped), as OpenCV's
    INTER_LINEAR; read-only arrays (first, second, first weight, second weight)."""
    position = (np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5
    position = np.clip(position, 0.0, source - 1)
    first = np.floor(position).astype(np.int64)
    second = np.minimum(first + 1, source - 1)
    weight = position - first
    taps = (first, second, 1.0 - weight, weight)
    for array in taps:
        array.flags.writeable = False
    return taps


def score_window(score: np.ndarray, size: tuple[int, int], rows: slice,
                 cols: slice) -> np.ndarray:
    """float32 HxW map -> float64 window [rows, cols] of its bilinear resize to `size`.

    Computed exactly in float64, where OpenCV's float32 resize (`resize_score`) rounds:
    the two differ by under 1e-6 of the map's magnitude. Costs per window pixel, so it
    pays for windows well under the frame.
    """
    first_row, second_row, top_weight, bottom_weight = (
        taps[rows] for taps in bilinear_taps(score.shape[0], size[0]))
    first_col, second_col, left_weight, right_weight = (
        taps[cols] for taps in bilinear_taps(score.shape[1], size[1]))
    low, high = int(first_row[0]), int(second_row[-1]) + 1
    band = score[low:high].astype(np.float64)
    across = band[:, first_col] * left_weight + band[:, second_col] * right_weight
    return (across[first_row - low] * top_weight[:, None]
            + across[second_row - low] * bottom_weight[:, None])


def classes_window(classes: np.ndarray, size: tuple[int, int], rows: slice,
                   cols: slice) -> np.ndarray:
    """uint8 HxW class ids -> window [rows, cols] of their nearest resize to `size`, equal to
    cropping `resize_classes`."""
    row_sources = nearest_sources(classes.shape[0], size[0])[rows]
    col_sources = nearest_sources(classes.shape[1], size[1])[cols]
    return classes[row_sources[:, None], col_sources[None, :]]
