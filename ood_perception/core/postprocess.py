"""Score map -> obstacle mask and obstacles: threshold, class gating, blob filtering.

Everything runs at the frame's own size, vectorised or in OpenCV. Components are labelled
only inside the bounding box of the above-threshold pixels: most frames have no obstacle or a
few near the road, so a 1920x1080 frame costs well under the full-frame labelling's ~4 ms.
`postprocess_model_map` starts from the model-resolution map and computes the full-size
score only around anomalous model pixels, so a frame without obstacles costs no full-size
work but the mask's allocation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ood_perception.core.frames import BgrFrame, Frame
from ood_perception.core.preprocess import (
    bilinear_taps,
    classes_window,
    resize_classes,
    resize_score,
    score_window,
)
from ood_perception.errors import ConfigurationError

# The model-map postprocess computes the full-size score over a window of the frame; past
# this fraction of the frame (1/N) one OpenCV resize of the whole map is cheaper.
FULL_MAP_BEYOND = 8


@dataclass(frozen=True)
class PostprocessConfig:
    """How a score map becomes obstacles; validated on construction."""

    # Pixels scoring strictly above this are anomalous (same scale as the graph's score).
    score_threshold: float = 0.5
    # Connected blobs smaller than this many pixels are dropped as noise.
    min_obstacle_area: int = 100
    # Keep anomalies only on or next to these class ids (e.g. road = 0); () = no gating.
    # Ignored when the graph has no `semantic` output.
    gating_classes: tuple[int, ...] = ()
    # "Next to": the gating region is grown by this many pixels in x and y (square kernel,
    # separable: ~1 ms at 1920x1080 where a disc costs ~13 ms).
    gating_dilation: int = 0
    # At most this many obstacles are reported (largest first); the mask keeps all blobs.
    max_obstacles: int = 64

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigurationError` naming the first invalid field."""
        threshold = self.score_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or (
                not math.isfinite(threshold)):
            raise ConfigurationError(f"score_threshold must be a finite number, got {threshold!r}")
        for name in ("min_obstacle_area", "gating_dilation", "max_obstacles"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
        if self.max_obstacles < 1:
            raise ConfigurationError(f"max_obstacles must be >= 1, got {self.max_obstacles}")
        if not isinstance(self.gating_classes, tuple):
            raise ConfigurationError(
                f"gating_classes must be a tuple of class ids, got {self.gating_classes!r}")
        for class_id in self.gating_classes:
            if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)) or not (
                    0 <= class_id <= 255):
                raise ConfigurationError(
                    f"gating_classes must hold class ids in 0..255, got {class_id!r}")


@dataclass(frozen=True)
class Obstacle:
    """One connected anomalous blob, in the frame's pixel coordinates."""

    id: int  # 1..N, largest area first (ties: topmost, then leftmost)
    area: int  # pixels
    score_max: float
    score_mean: float
    bbox: tuple[int, int, int, int]  # x, y, width, height
    centroid: tuple[float, float]  # x, y


@dataclass
class PostprocessResult:
    """uint8 HxW mask (0 or 255) of every kept blob and the reported obstacles."""

    mask: np.ndarray
    obstacles: list[Obstacle] = field(default_factory=list)


def gating_region(semantic: np.ndarray, classes: tuple[int, ...], dilation: int) -> np.ndarray:
    """bool HxW: pixels of `classes`, grown by `dilation` pixels (Chebyshev distance)."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(classes)] = 1
    region = cv2.LUT(semantic, lut) if semantic.dtype == np.uint8 else lut[semantic]
    if dilation > 0:
        kernel = np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8)
        region = cv2.dilate(region, kernel)
    return region.astype(bool)


def _components(binary: np.ndarray):
    """8-connected components; 16-bit labels (3x faster at 1080p) where they cannot overflow:
    an HxW box holds at most ceil(H/2) * ceil(W/2) of them, and never more than its
    foreground pixels (older OpenCV corrupts memory on an overflow rather than raising)."""
    height, width = binary.shape
    most = min((height + 1) // 2 * ((width + 1) // 2), cv2.countNonZero(binary))
    ltype = cv2.CV_16U if most < np.iinfo(np.uint16).max else cv2.CV_32S
    return cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=ltype)


def anomalous(score: np.ndarray, semantic: np.ndarray | None,
              config: PostprocessConfig) -> np.ndarray:
    """uint8 HxW, 1 where the score is above the threshold and, when gating, on or next to
    the gating classes (uint8 HxW `semantic` of the same size); NaN never counts."""
    binary = (score > config.score_threshold).view(np.uint8)
    if config.gating_classes and semantic is not None:
        if semantic.shape != score.shape:
            raise ConfigurationError(
                f"semantic shape {semantic.shape} differs from score shape {score.shape}")
        region = gating_region(semantic, config.gating_classes, config.gating_dilation)
        binary = binary & region.view(np.uint8)
    return binary


def label_blobs(binary: np.ndarray, score: np.ndarray, config: PostprocessConfig,
                frame_shape: tuple[int, int] | None = None, offset: tuple[int, int] = (0, 0),
                mask: np.ndarray | None = None) -> PostprocessResult:
    """uint8 0/1 anomalous pixels and the float score over the same window of a frame ->
    mask of the whole frame and obstacles in frame coordinates.

    The window sits at `offset` (top, left) of a `frame_shape` frame (default: the window
    is the frame); `mask`, if given, is a zeroed uint8 array of that shape to fill.
    """
    if mask is None:
        mask = np.zeros(frame_shape or binary.shape, np.uint8)
    left, top, width, height = cv2.boundingRect(binary)
    if width == 0:
        return PostprocessResult(mask=mask)
    rows, cols = slice(top, top + height), slice(left, left + width)
    binary_box = binary[rows, cols]
    count, labels, stats, centroids = _components(binary_box)
    areas = stats[:, cv2.CC_STAT_AREA]
    kept = np.flatnonzero(areas >= max(config.min_obstacle_area, 1))
    kept = kept[kept != 0]
    top, left = top + offset[0], left + offset[1]
    mask_box = mask[top:top + height, left:left + width]
    if kept.size == count - 1:
        np.multiply(binary_box, np.uint8(255), out=mask_box)
    else:
        lut = np.zeros(count, dtype=np.uint8)
        lut[kept] = 255
        mask_box[...] = lut[labels]
    # Largest first, ties by top then left edge: label numbers depend on the labelled box.
    left_edges, top_edges = stats[kept, cv2.CC_STAT_LEFT], stats[kept, cv2.CC_STAT_TOP]
    order = kept[np.lexsort((left_edges, top_edges, -areas[kept]))][: config.max_obstacles]
    score_box = score[rows, cols]
    obstacles = []
    for rank, label in enumerate(order, start=1):
        x, y, w, h, area = (int(v) for v in stats[label])
        inside = score_box[y:y + h, x:x + w][labels[y:y + h, x:x + w] == label]
        centre_x, centre_y = centroids[label]
        obstacles.append(Obstacle(
            id=rank, area=area, score_max=float(inside.max()), score_mean=float(inside.mean()),
            bbox=(x + left, y + top, w, h),
            centroid=(float(centre_x) + left, float(centre_y) + top),
        ))
    return PostprocessResult(mask=mask, obstacles=obstacles)


def postprocess(
    score: np.ndarray, semantic: np.ndarray | None, config: PostprocessConfig
) -> PostprocessResult:
    """float32 HxW score (+ uint8 HxW classes) -> mask and obstacles; NaN never counts."""
    return label_blobs(anomalous(score, semantic, config), score, config)


def _frame_span(taps: tuple[np.ndarray, ...], first: int, last: int) -> slice:
    """Frame rows (or columns) whose bilinear taps touch model rows first..last."""
    first_taps, second_taps = taps[0], taps[1]
    return slice(int(np.searchsorted(second_taps, first, "left")),
                 int(np.searchsorted(first_taps, last, "right")))


def postprocess_model_map(
    score: np.ndarray, semantic: np.ndarray | None, size: tuple[int, int],
    config: PostprocessConfig, mask: np.ndarray | None = None,
) -> PostprocessResult:
    """float32 hxw model map (+ uint8 hxw classes) -> mask and obstacles at frame `size`, as
    `postprocess` of their resize to `size`, with the full-size score computed only near
    anomalous pixels.

    A bilinear value is a convex mix of its (up to) four model pixels, so it can pass the
    threshold only next to a model pixel that does: the window around those holds every
    anomalous frame pixel. The window's score is exact (float64), where `resize_score`
    rounds to float32, so a frame pixel can differ from `postprocess` only where its score
    lies within about 1e-6 of the map's magnitude from the threshold. Windows over
    1/`FULL_MAP_BEYOND` of the frame use the full-size maps instead (the cheaper way there).
    `mask` is as in `label_blobs`.
    """
    if semantic is not None and semantic.shape != score.shape:
        raise ConfigurationError(
            f"semantic shape {semantic.shape} differs from score shape {score.shape}")
    threshold = config.score_threshold
    left, top, width, height = cv2.boundingRect((score > threshold).view(np.uint8))
    if width == 0:
        return PostprocessResult(mask=np.zeros(size, np.uint8) if mask is None else mask)
    rows = _frame_span(bilinear_taps(score.shape[0], size[0]), top, top + height - 1)
    cols = _frame_span(bilinear_taps(score.shape[1], size[1]), left, left + width - 1)
    window_pixels = (rows.stop - rows.start) * (cols.stop - cols.start)
    gating = bool(config.gating_classes) and semantic is not None
    if window_pixels * FULL_MAP_BEYOND > size[0] * size[1]:
        full_score = resize_score(score, size)
        full_classes = resize_classes(semantic, size) if gating else None
        return label_blobs(anomalous(full_score, full_classes, config), full_score, config,
                           mask=mask)
    window = score_window(score, size, rows, cols)
    binary = (window > threshold).view(np.uint8)
    if gating:
        grow = config.gating_dilation
        grown_rows = slice(max(rows.start - grow, 0), min(rows.stop + grow, size[0]))
        grown_cols = slice(max(cols.start - grow, 0), min(cols.stop + grow, size[1]))
        region = gating_region(classes_window(semantic, size, grown_rows, grown_cols),
                               config.gating_classes, grow)
        inner = region[rows.start - grown_rows.start:rows.stop - grown_rows.start,
                       cols.start - grown_cols.start:cols.stop - grown_cols.start]
        binary = binary & inner.view(np.uint8)
    return label_blobs(binary, window, config, size, (rows.start, cols.start), mask)


def normalise_score(
    score: np.ndarray, score_range: tuple[float, float] | None = None
) -> np.ndarray:
    """float HxW -> uint8 0..255 over `score_range` (the map's finite min/max when None)."""
    if score_range is None:
        low, high = float(score.min()), float(score.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            finite = score[np.isfinite(score)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0, 1)
    else:
        low, high = (float(v) for v in score_range)
    scale = 255.0 / (high - low) if high > low else 0.0
    # Clipped first, so the absolute value convertScaleAbs takes is a no-op; NaN becomes 0.
    clipped = np.clip(score, low, high)
    return cv2.convertScaleAbs(clipped, alpha=scale, beta=-low * scale)


def render_overlay(
    rgb: Frame,
    score: np.ndarray,
    mask: np.ndarray,
    score_range: tuple[float, float] | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """BGR uint8 frame blended with the viridis-coloured score, obstacle outlines in red;
    `rgb` is an RGB array or a `BgrFrame` (then used as it is)."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigurationError(f"overlay alpha must be in [0, 1], got {alpha}")
    colours = cv2.applyColorMap(normalise_score(score, score_range), cv2.COLORMAP_VIRIDIS)
    frame = rgb.pixels if isinstance(rgb, BgrFrame) else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    overlay = cv2.addWeighted(colours, alpha, frame, 1.0 - alpha, 0.0)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(min(mask.shape) / 360))
    cv2.drawContours(overlay, contours, -1, (0, 0, 255), thickness)
    return overlay
