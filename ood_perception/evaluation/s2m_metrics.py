"""S2M's own metrics (Segment Every Out-of-Distribution Object, section 6.3): AuIoU, best IoU
and mean F1, as WenjieZhao1/S2M `tools/inference.py` computes them.

Not SMIYC's component sIoU / F1. At each of 101 thresholds t = lo + k (hi - lo) / 100, every
image's pixel IoU and F1 (Dice) of `score > t` against its anomaly pixels are averaged over the
images (an image whose union is empty counts 0, and ignore-labelled pixels count as inlier, as
upstream); best IoU is the highest of those means, mean F1 their mean over thresholds, and
AuIoU the trapezoid area under the IoU curve over t normalised to [0, 1]. For an S2M map
(confidences in [0, 1]) the range is [0, 1]; the paper sweeps other scores over their dataset
minimum..maximum (its eq. 8).
"""

from __future__ import annotations

import numpy as np

from ood_perception.errors import ConfigurationError

ANOMALY = 1
STEPS = 100


class S2MMetrics:
    """Streaming: `update()` per frame, then `summary()`; memory is 2 x 101 floats."""

    def __init__(self, lo: float = 0.0, hi: float = 1.0):
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ConfigurationError(f"S2M metric range needs finite lo < hi, got {lo}, {hi}")
        # np.arange as upstream builds its list (0, 0.01, ..., 1.0), mapped onto [lo, hi].
        self.fractions = np.arange(0, 1 + 1.0 / STEPS, 1.0 / STEPS)
        self.thresholds = lo + (hi - lo) * self.fractions
        self.iou_sum = np.zeros(len(self.thresholds))
        self.f1_sum = np.zeros(len(self.thresholds))
        self.frames = 0

    def update(self, score: np.ndarray, label: np.ndarray) -> None:
        """score float HxW, label HxW (1 = anomaly; every other value counts as inlier)."""
        if score.shape != label.shape:
            raise ConfigurationError(f"score map {score.shape} and label {label.shape} have "
                                     "different shapes")
        anomaly = label == ANOMALY
        positives = np.sort(score[anomaly].astype(np.float64))
        negatives = np.sort(score[~anomaly].astype(np.float64))
        inter = positives.size - np.searchsorted(positives, self.thresholds, side="right")
        false = negatives.size - np.searchsorted(negatives, self.thresholds, side="right")
        union = positives.size + false
        safe = np.maximum(union, 1)
        self.iou_sum += np.where(union > 0, inter / safe, 0.0)
        self.f1_sum += np.where(union > 0, 2 * inter / np.maximum(inter + union, 1), 0.0)
        self.frames += 1

    def merge_from(self, other: S2MMetrics) -> None:
        """Fold another accumulator over the same thresholds into this one."""
        if not np.array_equal(self.thresholds, other.thresholds):
            raise ConfigurationError("S2M metrics over different thresholds cannot be merged")
        self.iou_sum += other.iou_sum
        self.f1_sum += other.f1_sum
        self.frames += other.frames

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(thresholds, mean IoU over the images at each)."""
        return self.thresholds, self.iou_sum / max(self.frames, 1)

    def summary(self) -> dict:
        """auiou, best_iou (and its threshold), mean_f1 as fractions; NaN without frames."""
        if self.frames == 0:
            return dict.fromkeys(("auiou", "best_iou", "best_threshold", "mean_f1"),
                                 float("nan")) | {"frames": 0}
        _, iou = self.curve()
        f1 = self.f1_sum / self.frames
        best = int(np.argmax(iou))  # the first of equal maxima, as upstream's strict `>`
        area = float(np.sum((iou[1:] + iou[:-1]) / 2 * np.diff(self.fractions)))  # trapezoids
        return {"auiou": area,
                "best_iou": float(iou[best]), "best_threshold": float(self.thresholds[best]),
                "mean_f1": float(f1.mean()), "frames": self.frames}
