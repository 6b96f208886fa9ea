"""Component-level metrics of the SegmentMeIfYouCan benchmark (sIoU, PPV, F1, mean F1).

Definitions as in the benchmark's `metrics/instance_segmentation.py`:
- prediction = score > threshold, zeroed on ignore pixels; 8-connected components;
  predicted components smaller than `min_segment_size` are dropped;
- ground-truth components (8-connected anomaly pixels) smaller than `min_instance_size`
  become ignore; everything is then restricted to the non-ignore region;
- sIoU of a ground-truth component k: |k ∩ P(k)| / |(k ∪ P(k)) \\ A(k)|, where P(k) are the
  predicted components touching k and A(k) the other ground-truth components; this is
  |k ∩ pred| / (|k| + |P(k) ∩ inlier pixels|);
- PPV of a predicted component: share of its pixels on any ground-truth component;
- at each sIoU threshold t: TP = #gt with sIoU >= t, FN = #gt with sIoU < t,
  FP = #pred with PPV < t; F1 = 2TP / (2TP + FN + FP) over the whole dataset;
  mean F1 = mean over t in linspace(0.25, 0.75, 11).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ood_perception.errors import ConfigurationError

SIOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.25, 0.75, 11))


@dataclass(frozen=True)
class ComponentConfig:
    """Benchmark settings; the defaults are SMIYC's AnomalyTrack values."""

    threshold: float  # pixel score threshold (score > threshold is anomalous)
    min_segment_size: int = 500  # thresh_segsize; ObstacleTrack uses 50
    min_instance_size: int = 100  # thresh_instsize; ObstacleTrack uses 10
    siou_thresholds: tuple[float, ...] = SIOU_THRESHOLDS

    @classmethod
    def for_track(cls, track: str, threshold: float) -> ComponentConfig:
        """`anomaly` (RoadAnomaly21, RoadAnomaly, FS L&F) or `obstacle` (RoadObstacle21)."""
        sizes = {"anomaly": (500, 100), "obstacle": (50, 10)}
        if track not in sizes:
            raise ConfigurationError(f"unknown track {track!r}; choose anomaly or obstacle")
        return cls(threshold, *sizes[track])


@dataclass(frozen=True)
class FrameComponents:
    """Per-frame component scores (float64 arrays, one entry per component)."""

    siou_gt: np.ndarray
    siou_pred: np.ndarray
    ppv_pred: np.ndarray
    size_gt: np.ndarray
    size_pred: np.ndarray


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels.astype(np.int64), count - 1


def instances(
    score: np.ndarray, label: np.ndarray, config: ComponentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth and predicted component ids over the region of interest (1-D each)."""
    anomaly_gt = label == 1
    predicted = (score > config.threshold) & (label != 255)
    gt_ids, _ = _components(anomaly_gt)
    pred_ids, _ = _components(predicted)
    pred_sizes = np.bincount(pred_ids.ravel())
    pred_ids[pred_sizes[pred_ids] < config.min_segment_size] = 0
    gt_sizes = np.bincount(gt_ids.ravel())
    roi = (label != 255) & (gt_sizes[gt_ids] >= config.min_instance_size)
    return gt_ids[roi], pred_ids[roi]


def segment_scores(gt_ids: np.ndarray, pred_ids: np.ndarray) -> FrameComponents:
    """sIoU of every gt component and sIoU / PPV of every predicted one (vectorised)."""
    gt_list = np.unique(gt_ids[gt_ids > 0])
    pred_list = np.unique(pred_ids[pred_ids > 0])
    width = int(pred_ids.max(initial=0)) + 1
    pairs, counts = np.unique(gt_ids * width + pred_ids, return_counts=True)
    pair_gt, pair_pred = pairs // width, pairs % width
    size_gt = np.bincount(gt_ids, minlength=int(gt_ids.max(initial=0)) + 1)
    size_pred = np.bincount(pred_ids, minlength=width)
    # pixels of each predicted component lying on inliers (gt 0)
    on_inlier = np.zeros(width, np.int64)
    on_inlier[pair_pred[pair_gt == 0]] = counts[pair_gt == 0]
    # pixels of each gt component lying on inliers of predictions' view (pred 0)
    gt_on_void = np.zeros(size_gt.size, np.int64)
    gt_on_void[pair_gt[pair_pred == 0]] = counts[pair_pred == 0]

    siou_gt = []
    for k in gt_list:
        touching = pair_pred[(pair_gt == k) & (pair_pred > 0)]
        intersection = size_gt[k] - gt_on_void[k]
        siou_gt.append(intersection / (size_gt[k] + on_inlier[touching].sum()))
    siou_pred, ppv_pred = [], []
    for j in pred_list:
        touching = pair_gt[(pair_pred == j) & (pair_gt > 0)]
        intersection = size_pred[j] - on_inlier[j]
        siou_pred.append(intersection / (size_pred[j] + gt_on_void[touching].sum()))
        ppv_pred.append(intersection / size_pred[j])
    return FrameComponents(
        np.asarray(siou_gt, np.float64),
        np.asarray(siou_pred, np.float64),
        np.asarray(ppv_pred, np.float64),
        size_gt[gt_list].astype(np.int64),
        size_pred[pred_list].astype(np.int64),
    )


@dataclass
class ComponentMetrics:
    """Accumulates frames at one pixel threshold; `summary()` gives the benchmark table."""

    config: ComponentConfig
    _siou_gt: list = field(default_factory=list)
    _siou_pred: list = field(default_factory=list)
    _ppv: list = field(default_factory=list)
    _tp: np.ndarray | None = None
    _fn: np.ndarray | None = None
    _fp: np.ndarray | None = None

    def update(self, score: np.ndarray, label: np.ndarray) -> FrameComponents:
        """Add one frame: score float HxW, label uint8 HxW (0 / 1 / 255)."""
        if score.shape != label.shape:
            raise ConfigurationError(
                f"score map {score.shape} and label {label.shape} have different shapes"
            )
        frame = segment_scores(*instances(score, label, self.config))
        t = np.asarray(self.config.siou_thresholds)[:, None]
        tp = (frame.siou_gt[None] >= t).sum(1)
        fn = (frame.siou_gt[None] < t).sum(1)
        fp = (frame.ppv_pred[None] < t).sum(1)
        if self._tp is None:
            self._tp, self._fn, self._fp = tp, fn, fp
        else:
            self._tp, self._fn, self._fp = self._tp + tp, self._fn + fn, self._fp + fp
        self._siou_gt.append(frame.siou_gt)
        self._siou_pred.append(frame.siou_pred)
        self._ppv.append(frame.ppv_pred)
        return frame

    def merge_from(self, other: ComponentMetrics) -> None:
        """Append another accumulator's frames (a worker's shard) after this one's. Merged in
        frame order, the per-component lists, and so every mean, equal one pass's exactly."""
        if other.config != self.config:
            raise ConfigurationError(f"cannot merge component metrics of {other.config} into "
                                     f"{self.config}")
        self._siou_gt += other._siou_gt
        self._siou_pred += other._siou_pred
        self._ppv += other._ppv
        if other._tp is not None:
            if self._tp is None:
                self._tp, self._fn, self._fp = other._tp, other._fn, other._fp
            else:
                self._tp, self._fn, self._fp = (self._tp + other._tp, self._fn + other._fn,
                                                self._fp + other._fp)

    def summary(self) -> dict:
        """sIoU_gt, PPV (prec_pred), F1 at 0.25/0.5/0.75 and mean F1, with counts."""
        siou_gt = np.concatenate(self._siou_gt) if self._siou_gt else np.zeros(0)
        siou_pred = np.concatenate(self._siou_pred) if self._siou_pred else np.zeros(0)
        ppv = np.concatenate(self._ppv) if self._ppv else np.zeros(0)
        n = len(self.config.siou_thresholds)
        tp = self._tp if self._tp is not None else np.zeros(n, np.int64)
        fn = self._fn if self._fn is not None else np.zeros(n, np.int64)
        fp = self._fp if self._fp is not None else np.zeros(n, np.int64)
        denominator = 2 * tp + fn + fp
        f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)
        result = {
            "siou_gt": float(siou_gt.mean()) if siou_gt.size else float("nan"),
            "siou_pred": float(siou_pred.mean()) if siou_pred.size else float("nan"),
            "ppv": float(ppv.mean()) if ppv.size else float("nan"),
            "f1_mean": float(f1.mean()),
            "gt_components": int(siou_gt.size),
            "pred_components": int(ppv.size),
            "threshold": float(self.config.threshold),
        }
        for i, t in enumerate(self.config.siou_thresholds):
            if round(t * 100) in (25, 50, 75):
                key = round(t * 100)
                result[f"f1_{key}"] = float(f1[i])
                result[f"tp_{key}"], result[f"fn_{key}"] = int(tp[i]), int(fn[i])
                result[f"fp_{key}"] = int(fp[i])
        return result
