"""The obstacle threshold that reaches a target TPR or FPR on a labelled set.

It comes from the exact pixel curve of `PixelMetrics`, so it is the threshold the node compares
with (as float32), not an interpolation.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.pixel_metrics import OperatingPoint, PixelMetrics

DEFAULT_TARGET_TPR = 0.95


def operating_point(metrics: PixelMetrics, target_tpr: float | None,
                    target_fpr: float | None) -> OperatingPoint:
    """The operating point: highest threshold with TPR >= target, or lowest with FPR <= target."""
    for name, value in (("--target-tpr", target_tpr), ("--target-fpr", target_fpr)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigurationError(f"{name} must be a fraction in [0, 1], got {value}")
    if metrics.positives + metrics.negatives == 0:
        raise ConfigurationError("no labelled pixels: every pixel is ignored")
    if target_fpr is not None:
        point = metrics.point_at_fpr(target_fpr)
    else:
        if metrics.positives == 0:
            raise ConfigurationError("the labelled set has no anomaly pixels; use --target-fpr")
        point = metrics.point_at_tpr(DEFAULT_TARGET_TPR if target_tpr is None else target_tpr)
    if point is None:
        raise ConfigurationError(f"no threshold keeps the FPR at or below {target_fpr}")
    if not math.isfinite(point.threshold):
        raise ConfigurationError(f"the operating point's threshold is {point.threshold}; the "
                                 "node needs a finite one (do the score maps hold inf?)")
    return point


def calibration_record(metrics: PixelMetrics, point: OperatingPoint, target: str,
                       source: str) -> dict:
    """What the sidecar JSON keeps: the threshold, the figures there and on the whole set."""
    return {
        "target": target,
        "score_threshold": float(np.float32(point.threshold)),
        "at_threshold": dataclasses.asdict(point),
        "ap": metrics.ap(),
        "auroc": metrics.auroc(),
        "fpr95": metrics.fpr_at_tpr(0.95),
        "frames": metrics.frames,
        "positive_pixels": metrics.positives,
        "negative_pixels": metrics.negatives,
        "source": source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
