"""SMIYC component metrics on hand-made masks with known answers, and against a brute force."""

import numpy as np
import pytest
from scipy import ndimage

from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.component_metrics import (
    ComponentConfig,
    ComponentMetrics,
    instances,
    segment_scores,
)


def _config(**kwargs):
    return ComponentConfig(
        threshold=0.5, **{"min_segment_size": 1, "min_instance_size": 1, **kwargs}
    )


def _scene():
    """gt A 4x4 (predicted with 4 extra inlier pixels), gt B 3x3 (missed), a 5-pixel false blob."""
    label = np.zeros((20, 20), np.uint8)
    label[2:6, 2:6] = 1
    label[12:15, 12:15] = 1
    score = np.zeros((20, 20), np.float32)
    score[2:6, 2:7] = 1.0  # A plus one inlier column of 4 pixels
    score[17, 2:7] = 1.0  # 5 false pixels
    return score, label


def test_known_answers():
    score, label = _scene()
    metrics = ComponentMetrics(_config())
    frame = metrics.update(score, label)
    assert sorted(frame.siou_gt) == pytest.approx([0.0, 0.8])
    assert sorted(frame.ppv_pred) == pytest.approx([0.0, 0.8])
    summary = metrics.summary()
    assert summary["siou_gt"] == pytest.approx(0.4)
    assert summary["ppv"] == pytest.approx(0.4)
    assert summary["f1_25"] == pytest.approx(0.5) and summary["f1_75"] == pytest.approx(0.5)
    assert summary["f1_mean"] == pytest.approx(0.5)
    assert (summary["tp_50"], summary["fn_50"], summary["fp_50"]) == (1, 1, 1)


def test_size_filters():
    score, label = _scene()
    summary = ComponentMetrics(_config(min_segment_size=6, min_instance_size=10))
    summary.update(score, label)
    result = summary.summary()
    assert result["gt_components"] == 1  # B (9 px) became ignore
    assert result["pred_components"] == 1  # the 5-pixel blob was dropped
    assert result["f1_mean"] == pytest.approx(1.0)


def test_other_ground_truth_is_not_counted_against_a_component():
    label = np.zeros((10, 12), np.uint8)
    label[2:6, 1:5] = 1
    label[2:6, 6:10] = 1
    score = np.zeros((10, 12), np.float32)
    score[2:6, 1:10] = 1  # one blob over both objects and the 4-pixel gap
    frame = segment_scores(*instances(score, label, _config()))
    assert frame.siou_gt == pytest.approx([0.8, 0.8])
    assert frame.ppv_pred == pytest.approx([32 / 36])


def test_ignore_pixels_never_predicted():
    label = np.zeros((8, 8), np.uint8)
    label[:, :4] = 255
    label[3:5, 5:7] = 1
    score = np.ones((8, 8), np.float32)
    frame = segment_scores(*instances(score, label, _config()))
    assert frame.size_pred.tolist() == [32]  # only the non-ignore half
    assert frame.siou_gt == pytest.approx([4 / 32])


def _brute_force(score, label, config):
    """The benchmark definitions written as plain loops over components."""
    eight = np.ones((3, 3))
    gt, n_gt = ndimage.label(label == 1, eight)
    pred, n_pred = ndimage.label((score > config.threshold) & (label != 255), eight)
    for j in range(1, n_pred + 1):
        if (pred == j).sum() < config.min_segment_size:
            pred[pred == j] = 0
    roi = label != 255
    for k in range(1, n_gt + 1):
        if (gt == k).sum() < config.min_instance_size:
            roi &= gt != k
    gt, pred = gt[roi], pred[roi]
    siou, ppv = [], []
    for k in np.unique(gt[gt > 0]):
        touching = np.unique(pred[(gt == k) & (pred > 0)])
        union = np.isin(pred, touching) | (gt == k)
        union &= ~((gt > 0) & (gt != k))
        siou.append(((gt == k) & (pred > 0)).sum() / union.sum())
    for j in np.unique(pred[pred > 0]):
        ppv.append(((pred == j) & (gt > 0)).sum() / (pred == j).sum())
    return sorted(siou), sorted(ppv)


@pytest.mark.parametrize("seed", range(5))
def test_random_blobs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    label = (ndimage.gaussian_filter(rng.random((60, 80)), 3) > 0.53).astype(np.uint8)
    label[rng.random((60, 80)) < 0.02] = 255
    score = ndimage.gaussian_filter(rng.random((60, 80)), 2).astype(np.float32)
    config = ComponentConfig(
        threshold=float(np.quantile(score, 0.8)), min_segment_size=5, min_instance_size=4
    )
    frame = segment_scores(*instances(score, label, config))
    siou, ppv = _brute_force(score, label, config)
    assert sorted(frame.siou_gt) == pytest.approx(siou)
    assert sorted(frame.ppv_pred) == pytest.approx(ppv)
    assert len(siou) > 0


def test_track_presets_and_errors():
    assert ComponentConfig.for_track("obstacle", 0.3).min_segment_size == 50
    assert ComponentConfig.for_track("anomaly", 0.3).min_instance_size == 100
    with pytest.raises(ConfigurationError):
        ComponentConfig.for_track("weather", 0.3)
    with pytest.raises(ConfigurationError):
        ComponentMetrics(_config()).update(np.zeros((2, 2)), np.zeros((3, 3), np.uint8))


def test_shards_merged_in_frame_order_equal_one_pass_exactly():
    rng = np.random.default_rng(4)
    frames = []
    for _ in range(7):
        label = np.zeros((30, 30), np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, 24, 2)
            label[y:y + rng.integers(2, 7), x:x + rng.integers(2, 7)] = 1
        score = (label + rng.normal(0, 0.4, label.shape)).astype(np.float32)
        frames.append((score, label))
    whole, merged = ComponentMetrics(_config()), ComponentMetrics(_config())
    for score, label in frames:
        whole.update(score, label)
    for start in range(0, 7, 3):
        shard = ComponentMetrics(_config())
        for score, label in frames[start:start + 3]:
            shard.update(score, label)
        merged.merge_from(shard)
    assert merged.summary() == whole.summary()
    with pytest.raises(ConfigurationError, match="cannot merge"):
        merged.merge_from(ComponentMetrics(_config(min_segment_size=5)))
