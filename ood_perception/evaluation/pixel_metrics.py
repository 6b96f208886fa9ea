"""Exact, streaming pixel-level anomaly metrics (AP, AUROC, FPR at 95% TPR, AuIoU).

Every valid pixel's score is a float32 key; the accumulator keeps, per distinct key, how
many anomaly (positive) and inlier (negative) pixels carry it. Every ranking metric is a
function of that table alone, so the results equal a direct computation over all pixels
of the dataset at once (sklearn's `average_precision_score`, `roc_auc_score`, the SMIYC
curve code), ties included, without holding the pixels.

Memory: 20 bytes per distinct key (float32 key + two int64 counts) plus a merge buffer of
`merge_every` entries; it never depends on the number of frames. Continuous float32 maps
of a few hundred megapixels have at most that many distinct keys; with `key_dtype=
"float16"` the table has at most 63,488 rows (scores rounded to float16 first, as the
SMIYC benchmark stores its heatmaps), and the metrics are exact for the rounded scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ood_perception.contract import IGNORE_LABEL
from ood_perception.errors import ConfigurationError

INLIER, ANOMALY, IGNORE = 0, 1, IGNORE_LABEL


@dataclass(frozen=True)
class Curve:
    """Operating points, one per distinct score, from the highest threshold to the lowest.

    A pixel is called anomalous at point i when its score >= thresholds[i].
    """

    thresholds: np.ndarray  # float32 [N], descending
    tp: np.ndarray  # int64 [N], anomaly pixels with score >= threshold
    fp: np.ndarray  # int64 [N], inlier pixels with score >= threshold
    positives: int
    negatives: int

    @property
    def tpr(self) -> np.ndarray:
        return self.tp / max(self.positives, 1)

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / max(self.negatives, 1)

    @property
    def precision(self) -> np.ndarray:
        predicted = self.tp + self.fp
        return np.where(predicted > 0, self.tp / np.maximum(predicted, 1), 1.0)


@dataclass(frozen=True)
class OperatingPoint:
    """What the mask `score > threshold` (equivalently `score >= key`) yields on the data."""

    threshold: float  # use as `score > threshold` (the node's and SMIYC's convention)
    key: float  # the lowest score still called anomalous
    tpr: float
    fpr: float
    precision: float
    f1: float
    iou: float


class PixelMetrics:
    """Streaming accumulator; `update()` per frame, then `ap()`, `auroc()`, `fpr_at_tpr()`."""

    def __init__(self, key_dtype: str = "float32", merge_every: int = 4_000_000):
        if key_dtype not in ("float32", "float16"):
            raise ConfigurationError(f"key_dtype must be float32 or float16, not {key_dtype!r}")
        self._dtype = np.dtype(key_dtype)
        self._merge_every = merge_every
        self._keys = np.zeros(0, self._dtype)
        self._pos = np.zeros(0, np.int64)
        self._neg = np.zeros(0, np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_len = 0
        self.frames = 0
        self.ignored = 0

    def update(self, score: np.ndarray, label: np.ndarray) -> None:
        """Add one frame: score float HxW, label uint8 HxW (0 inlier, 1 anomaly, else ignored)."""
        if score.shape != label.shape:
            raise ConfigurationError(
                f"score map {score.shape} and label {label.shape} have different shapes"
            )
        valid = (label == INLIER) | (label == ANOMALY)
        values = np.asarray(score)[valid].astype(self._dtype)
        if np.isnan(values).any():
            raise ConfigurationError("score map contains NaN inside the labelled region")
        self.frames += 1
        self.ignored += int(valid.size - values.size)
        if values.size == 0:
            return
        keys, inverse = np.unique(values, return_inverse=True)
        positive = label[valid] == ANOMALY
        pos = np.bincount(inverse, weights=positive, minlength=keys.size).astype(np.int64)
        neg = np.bincount(inverse, minlength=keys.size).astype(np.int64) - pos
        self._pending.append((keys, pos, neg))
        self._pending_len += keys.size
        if self._pending_len >= self._merge_every:
            self._merge()

    def merge_from(self, other: PixelMetrics) -> None:
        """Fold another accumulator (e.g. a worker's shard) into this one: counts per key add
        up, so the merged table, and every metric, equals one pass over all frames."""
        if other._dtype != self._dtype:
            raise ConfigurationError(f"cannot merge {other._dtype} score keys into "
                                     f"{self._dtype} ones; use one key precision everywhere")
        other._merge()
        self._pending.append((other._keys, other._pos, other._neg))
        self._pending_len += other._keys.size
        self.frames += other.frames
        self.ignored += other.ignored
        self._merge()

    def state(self) -> dict:
        """The exact state as plain arrays and ints (what a worker sends back): key dtype,
        keys [N], positive and negative counts int64 [N], frames, ignored pixels."""
        self._merge()
        return {"key_dtype": self._dtype.name, "keys": self._keys, "pos": self._pos,
                "neg": self._neg, "frames": self.frames, "ignored": self.ignored}

    @classmethod
    def from_state(cls, state: dict) -> PixelMetrics:
        """The accumulator `state()` describes."""
        metrics = cls(key_dtype=state["key_dtype"])
        keys = np.asarray(state["keys"], metrics._dtype)
        pos, neg = np.asarray(state["pos"], np.int64), np.asarray(state["neg"], np.int64)
        if not (keys.ndim == 1 and keys.shape == pos.shape == neg.shape):
            raise ConfigurationError("pixel metrics state: keys and counts must be 1-D arrays "
                                     "of one length")
        metrics._keys, metrics._pos, metrics._neg = keys, pos, neg
        metrics.frames, metrics.ignored = int(state["frames"]), int(state["ignored"])
        return metrics

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys] + [p[0] for p in self._pending])
        pos = np.concatenate([self._pos] + [p[1] for p in self._pending])
        neg = np.concatenate([self._neg] + [p[2] for p in self._pending])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._pos = np.bincount(inverse, weights=pos, minlength=self._keys.size).astype(np.int64)
        self._neg = np.bincount(inverse, weights=neg, minlength=self._keys.size).astype(np.int64)
        self._pending, self._pending_len = [], 0

    @property
    def distinct_scores(self) -> int:
        self._merge()
        return int(self._keys.size)

    @property
    def positives(self) -> int:
        self._merge()
        return int(self._pos.sum())

    @property
    def negatives(self) -> int:
        self._merge()
        return int(self._neg.sum())

    def curve(self) -> Curve:
        """The full curve, one point per distinct score (descending thresholds)."""
        self._merge()
        order = slice(None, None, -1)
        tp, fp = np.cumsum(self._pos[order]), np.cumsum(self._neg[order])
        return Curve(self._keys[order].copy(), tp, fp, self.positives, self.negatives)

    def ap(self) -> float:
        """Average precision, sum over thresholds of (R_n - R_{n-1}) * P_n (sklearn's)."""
        c = self.curve()
        if c.positives == 0:
            return float("nan")
        recall = np.concatenate([[0.0], c.tp / c.positives])
        return float(np.sum(np.diff(recall) * c.precision))

    def auroc(self) -> float:
        """Area under the ROC curve (trapezoids through (0, 0) and every point)."""
        c = self.curve()
        if c.positives == 0 or c.negatives == 0:
            return float("nan")
        fpr = np.concatenate([[0.0], c.fpr])
        tpr = np.concatenate([[0.0], c.tpr])
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))

    def fpr_at_tpr(self, target: float = 0.95) -> float:
        """FPR at the first (highest) threshold whose TPR reaches `target`.

        This is the SMIYC definition (`searchsorted(tpr, 0.95)` on its curve) and UEM's
        (`fpr[argmax(tpr >= 0.95)]`); 1.0 when no positives exist.
        """
        point = self.point_at_tpr(target)
        return 1.0 if point is None else point.fpr

    def point_at_tpr(self, target: float) -> OperatingPoint | None:
        """Highest threshold reaching TPR >= target, or None without positives."""
        c = self.curve()
        if c.positives == 0:
            return None
        index = int(np.argmax(c.tpr >= target))
        return self._point(c, index)

    def point_at_fpr(self, target: float) -> OperatingPoint | None:
        """Lowest threshold keeping FPR <= target (the most recall within the FPR budget)."""
        c = self.curve()
        allowed = np.nonzero(c.fpr <= target)[0]
        if allowed.size == 0:
            return None
        return self._point(c, int(allowed[-1]))

    def best_f1_point(self) -> OperatingPoint | None:
        """The threshold with the highest pixel F1 (SMIYC's choice for component metrics)."""
        c = self.curve()
        if c.positives == 0:
            return None
        f1 = 2 * c.tp / (c.tp + c.fp + c.positives)
        return self._point(c, int(np.argmax(f1)))

    def point_at_threshold(self, threshold: float) -> OperatingPoint:
        """Counts of the mask `score > threshold`."""
        c = self.curve()
        # compare in the key dtype, as numpy compares a float32 map with a Python float
        above = self._keys.size - np.searchsorted(self._keys, self._dtype.type(threshold), "right")
        return self._point(c, int(above) - 1, threshold)

    def _point(self, c: Curve, index: int, threshold: float | None = None) -> OperatingPoint:
        if index < 0:
            tp = fp = 0
            key = float("inf")
        else:
            tp, fp, key = int(c.tp[index]), int(c.fp[index]), float(c.thresholds[index])
        if threshold is None:
            threshold = float(np.nextafter(np.float32(key), np.float32(-np.inf)))
        fn = c.positives - tp
        return OperatingPoint(
            threshold=threshold,
            key=key,
            tpr=tp / c.positives if c.positives else float("nan"),
            fpr=fp / c.negatives if c.negatives else float("nan"),
            precision=tp / (tp + fp) if tp + fp else 1.0,
            f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
            iou=tp / (tp + fp + fn) if tp + fp + fn else float("nan"),
        )

    def threshold_sweep(self, lo: float = 0.0, hi: float = 1.0, steps: int = 100) -> dict:
        """Mean pixel IoU (AuIoU) and mean F1 over `steps` thresholds, as Segment Every
        Out-of-Distribution Object (S2M) defines them in section 6.3.

        Thresholds lo + k (hi - lo) / steps, k = 0..steps-1 (0, 0.01, ..., 0.99 by default);
        a pixel counts as anomalous when score > threshold.
        """
        points = [self.point_at_threshold(lo + k * (hi - lo) / steps) for k in range(steps)]
        iou = np.nan_to_num([p.iou for p in points])
        f1 = np.nan_to_num([p.f1 for p in points])
        return {"auiou": float(iou.mean()), "mean_f1": float(f1.mean())}

    def best_iou(self) -> float:
        """The best pixel IoU over every threshold (S2M's "IoU" of score-based methods)."""
        c = self.curve()
        if c.positives == 0:
            return float("nan")
        return float(np.max(c.tp / (c.fp + c.positives)))

    def summary(self) -> dict:
        """The headline numbers as plain floats/ints (fractions in [0, 1])."""
        return {
            "ap": self.ap(),
            "auroc": self.auroc(),
            "fpr95": self.fpr_at_tpr(0.95),
            "best_iou": self.best_iou(),
            "frames": self.frames,
            "positive_pixels": self.positives,
            "negative_pixels": self.negatives,
            "ignored_pixels": self.ignored,
            "distinct_scores": self.distinct_scores,
        }


def downsample_curve(x: np.ndarray, y: np.ndarray, points: int = 2000) -> tuple:
    """At most `points` points of a monotone curve, for plots and JSON."""
    if x.size <= points:
        return x, y
    index = np.unique(np.linspace(0, x.size - 1, points).round().astype(np.int64))
    return x[index], y[index]
