"""S2M's AuIoU / best IoU / mean F1 against a transcription of WenjieZhao1/S2M's `get_iou`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.s2m_metrics import S2MMetrics


def official_get_iou(anomaly: np.ndarray, ood_gts: np.ndarray, step: float = 0.01) -> dict:
    """`get_iou` and `calculate_miou` of tools/inference.py (file writing left out)."""
    anomaly, ood_gts = torch.from_numpy(anomaly), torch.from_numpy(ood_gts)
    ious, f1s, thresholds = [], [], []
    best, best_threshold = 0, 0
    for threshold in np.arange(0, 1 + step, step):
        thresholds.append(threshold)
        mask = torch.zeros_like(anomaly)
        mask[anomaly > threshold] = 1
        per_iou, per_f1 = [], []
        for i in range(len(ood_gts)):
            inter = torch.logical_and(ood_gts[i] == 1, mask[i] == 1).sum().item()
            union = torch.logical_or(ood_gts[i] == 1, mask[i] == 1).sum().item()
            per_iou.append(0 if union == 0 else inter / union)
            per_f1.append(0 if union == 0 else 2 * inter / (inter + union))
        iou = np.mean(per_iou)
        if iou > best:
            best, best_threshold = iou, threshold
        ious.append(iou)
        f1s.append(np.mean(per_f1))
    return {"auiou": np.trapezoid(ious, thresholds), "best_iou": best,
            "best_threshold": best_threshold, "mean_f1": np.mean(f1s)}


def _frames(seed: int):
    """S2M-like maps (confidences on blobs), labels with void (255) and an empty frame."""
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for index in range(5):
        label = np.zeros((30, 40), np.uint8)
        score = np.zeros((30, 40), np.float32)
        if index != 4:
            label[5:15, 8:20] = 1
            score[6:16, 7:19] = rng.uniform(0.3, 0.95)
            score[20:25, 25:35] = rng.uniform(0.05, 0.5)  # a false positive
        label[:, :3] = 255
        score[:2, :] = rng.uniform(0, 1)  # predictions on void count against IoU upstream
        scores.append(score)
        labels.append(label)
    return np.stack(scores), np.stack(labels)


def test_matches_the_official_computation():
    scores, labels = _frames(seed=0)
    metrics = S2MMetrics()
    for score, label in zip(scores, labels, strict=True):
        metrics.update(score, label)
    expected = official_get_iou(scores.astype(np.float64), labels)
    got = metrics.summary()
    assert got["frames"] == 5
    for key in ("auiou", "best_iou", "best_threshold", "mean_f1"):
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    assert 0 < got["auiou"] < got["best_iou"] < 1


def test_other_score_ranges_sweep_their_own_thresholds():
    scores, labels = _frames(seed=1)
    raw = scores * 20.0 - 10.0  # e.g. an energy score over [-10, 10]
    metrics, unit = S2MMetrics(lo=-10.0, hi=10.0), S2MMetrics()
    for score, scaled, label in zip(scores, raw, labels, strict=True):
        metrics.update(scaled, label)
        unit.update(score, label)
    assert metrics.summary()["best_iou"] == pytest.approx(unit.summary()["best_iou"])
    assert metrics.summary()["best_threshold"] == pytest.approx(
        unit.summary()["best_threshold"] * 20 - 10)


def test_merging_shards_equals_one_pass():
    scores, labels = _frames(seed=2)
    whole, first, second = S2MMetrics(), S2MMetrics(), S2MMetrics()
    for index, (score, label) in enumerate(zip(scores, labels, strict=True)):
        whole.update(score, label)
        (first if index < 2 else second).update(score, label)
    first.merge_from(second)
    assert first.summary() == whole.summary()


def test_no_frames_and_bad_ranges():
    assert np.isnan(S2MMetrics().summary()["auiou"])
    with pytest.raises(ConfigurationError):
        S2MMetrics(lo=1.0, hi=1.0)
    with pytest.raises(ConfigurationError):
        S2MMetrics().update(np.zeros((2, 2)), np.zeros((3, 3)))
